"""Torch-only numerics. Nothing in this package imports xarray or dask.

From the surrogates it sees the protocols of :mod:`xlevda.surrogates.protocol` alone.

- LEVDA, one window: :mod:`~xlevda.core.window` (the observations),
  :mod:`~xlevda.core.members` (member modes), :mod:`~xlevda.core.subspace`
  (the ensemble subspace), :mod:`~xlevda.core.objective` (eq. 19),
  :mod:`~xlevda.core.levda` (the solve), :mod:`~xlevda.core.excess` (what the
  analysis leaves unexplained).
- Time stepping: :mod:`~xlevda.core.dynamics` (Euler rollout, eq. 17, trajectories,
  propagation, decoded values at the observations).
- Batched optimizers: :mod:`~xlevda.core.optim` (configs, result, shared helpers),
  :mod:`~xlevda.core.lbfgs` with :mod:`~xlevda.core.line_search`,
  :mod:`~xlevda.core.gauss_newton`; :mod:`~xlevda.core.inversion` (latent states of
  given fields).
- Baselines: :mod:`~xlevda.core.ensf` with :mod:`~xlevda.core.scores` (EnSF),
  :mod:`~xlevda.core.ldensf` (LD-EnSF), :mod:`~xlevda.core.letkf` (ETKF/LETKF),
  :mod:`~xlevda.core.envar` (4DEnVar), :mod:`~xlevda.core.taper` (Gaspari-Cohn).
- Options every method shares: :mod:`~xlevda.core.inflation`,
  :mod:`~xlevda.core.localization`.
- Shared: :mod:`~xlevda.core.rng` (random streams from a seed, the seed check),
  :mod:`~xlevda.core.misfit`,
  :mod:`~xlevda.core.prior` (parameters drawn over a range).
"""
