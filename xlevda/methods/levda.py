"""LEVDA: latent ensemble variational data assimilation (paper section 3.2), as a method.

Each window's background is the previous analysis propagated through the
surrogate; :func:`xlevda.core.levda.solve_window` finds each member's analysis in
the ensemble subspace (eq. 19).  One dask task per window.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from xlevda._obs import ObsTable, plan_windows
from xlevda._obs import Window as PlannedWindow
from xlevda._window_length import WindowLength, check_window
from xlevda.core.bounds import BoundedSurrogate, ParameterBounds
from xlevda.core.hybrid import HybridCovariance, rollout_square_root
from xlevda.core.inflation import Inflation
from xlevda.core.levda import solve_window
from xlevda.core.members import MemberMode, RandomizedMaximumLikelihood, SharedCost
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.cycle import Analysis, Ensemble, Window, obs_window
from xlevda.errors import ConfigError, VariableError
from xlevda.field_analysis import FieldAnalysis, window_residuals
from xlevda.initial import latent_ensemble
from xlevda.methods.base import Method, MisfitPair, background_state, single
from xlevda.model_error import ModelErrorTerm
from xlevda.run import RunOptions
from xlevda.surrogates.protocol import FullStateModel, Surrogate

__all__ = ["LEVDA"]

DIAGNOSTICS = {
    "cost": "final cost of the member's objective (eq. 19)",
    "misfit": "observation misfit 1/2 sum w (y - H x)^2 of the analysis",
    "misfit_background": "observation misfit of the background member",
    "n_iter": "optimizer iterations",
    "converged": "optimizer converged",
    "failed": "optimization failed; member kept its background",
    "replaced": "background not finite (the surrogate's forecast of the member failed); the "
    "member restarted from the mean of the finite members",
}


@dataclass(frozen=True)
class LEVDA(Method):
    """LEVDA (paper section 3.2): windows of variational analyses in the latent space.

    Attributes
    ----------
    window : int or duration
        ``tau``: distinct observation times per window (>= 1), or a duration (a
        ``numpy.timedelta64``, ``datetime.timedelta``, ``pandas.Timedelta`` or a
        string such as ``"6h"``; datetime observation times only): window ``k``
        then holds the observations in ``[t0 + k stride, t0 + k stride + window)``,
        ``t0`` the first observation time; windows without observations are skipped
        (:func:`xlevda._obs.plan_windows`).
    window_stride : int or duration, optional
        Observation times (or the duration, if ``window`` is one) between window
        starts; ``None`` (= ``window``) gives non-overlapping windows, a smaller
        value overlapping ones.
    inflation : Inflation
        Of the background perturbations; ``Inflation.additive`` in normalized latent
        units.  Its noise in window ``w`` of a case with seed ``s`` comes from the
        seed ``s * 1_000_003 + w``.
    member_mode : SharedCost or RandomizedMaximumLikelihood
        How members differ: randomized-maximum-likelihood members with perturbed
        prior centres and data (the default; each starts at its ensemble Kalman
        analysis, ``RandomizedMaximumLikelihood(start="background")`` at its
        background member as in the paper), or the paper's warm starts of one
        shared cost (:class:`SharedCost`).  Shared-cost members converge to one
        minimum wherever the cost is convex, so their spread collapses and cycling
        then stops with an error asking for inflation; randomized members sample
        the posterior in the linear-Gaussian case (see ``tests/core``).  Their data
        perturbations in window ``w`` come from the seed ``hash((0, s * 1_000_003 +
        w)) % 2**62``.
    optimizer : LBFGSConfig or GaussNewtonConfig
        The batched solver of the K member problems.  The default L-BFGS stops a
        member when a step lowers its cost by less than ``1e-4`` of it: on the demo
        twin this halves the time of a tighter tolerance at equal accuracy
        (``benchmarks/levda_tolerance.py``, docs/results.md).  ``LBFGSConfig()``
        (the default of :func:`xlevda.core.levda.solve_window`) iterates until the
        cost stalls at round-off, the gradient reaches ``tol_grad`` or ``max_iter``.
        ``GaussNewtonConfig(jacobian=...)`` chooses how Gauss-Newton gets its Jacobian.
    model_error : FieldAnalysis, ModelErrorTerm or None
        Analyse the residuals each window leaves onto the fields (``FieldAnalysis()``,
        the default, :mod:`xlevda.field_analysis`: spatially correlated, follows the
        observations where the surrogate cannot represent them), add the estimated
        model-error term to the members' fields as white draws (``ModelErrorTerm()``,
        the paper's ensemble-only analysis), or ``None`` for the decoded surrogate
        states alone.  Off the training manifold the field analysis halves the error
        of the white draws or better, on it costs a few percent
        (``benchmarks/accuracy/off_manifold.py``, docs/off_manifold.md).
    static_covariance : HybridCovariance or None
        ``None`` (default): the prior covariance is the (inflated) ensemble's, as in
        the paper.  ``HybridCovariance(...)``: ``beta_e^2 P_e + beta_c^2 L L^T``
        (:mod:`xlevda.core.hybrid`), so that the analysis moves the latent state at
        every window start and in directions no member spans.  ``L`` is the leading
        ``rank`` principal directions of the spread of the surrogate's latent states
        (and parameters, with ``parameters=True``) over its training frames, rolled
        out from ``samples`` parameter draws over ``schema.param_range`` (seed 0, so
        every case and seed shares it,
        :func:`~xlevda.core.hybrid.rollout_square_root`), computed once per model,
        dtype and device and cached.  Not stored in the surrogate file (yet).
    bounded_parameters : bool
        Keep the estimated parameters strictly inside the surrogate's training range
        (``schema.param_range``; default): each window is solved for ``w =
        logit((u - low) / (high - low))`` instead of ``u``
        (:mod:`xlevda.core.bounds`), so the surrogate is never asked to extrapolate.
        Background members on or beyond the range start ``1e-4`` of its width
        inside.  ``False``: parameters are free and those outside the range are
        flagged (``window_<param>_outside_training_range``).  Simulators
        (:class:`~xlevda.surrogates.protocol.FullStateModel`) have no range and are
        never bounded.

    Ensemble size, seed (of the prior draws, the inflation noise and RML
    perturbations), precision and device are :class:`~xlevda.run.RunOptions`
    (default 100 members, float32).

    Examples
    --------
    >>> LEVDA(window=5).window_stride is None
    True
    """

    window: WindowLength = 5
    window_stride: WindowLength | None = None
    inflation: Inflation = field(default_factory=Inflation)
    member_mode: MemberMode = field(default_factory=RandomizedMaximumLikelihood)
    optimizer: LBFGSConfig | GaussNewtonConfig = field(
        default_factory=lambda: LBFGSConfig(tol_cost=1e-4)
    )
    model_error: FieldAnalysis | ModelErrorTerm | None = field(default_factory=FieldAnalysis)
    static_covariance: HybridCovariance | None = None
    bounded_parameters: bool = True

    name: ClassVar[str] = "LEVDA"
    title: ClassVar[str] = "LEVDA (latent ensemble variational data assimilation)"
    diagnostics: ClassVar[dict[str, str]] = DIAGNOSTICS
    misfit_pair: ClassVar[MisfitPair] = MisfitPair("misfit", "misfit_background", half_sum=True)

    def __post_init__(self) -> None:
        check_window(self.window, self.window_stride, "LEVDA")
        if not isinstance(self.inflation, Inflation):
            raise ConfigError(f"LEVDA.inflation={self.inflation!r}: expected Inflation(...)")
        if not isinstance(self.member_mode, SharedCost | RandomizedMaximumLikelihood):
            raise ConfigError(
                f"LEVDA.member_mode={self.member_mode!r}: expected SharedCost() or "
                "RandomizedMaximumLikelihood()"
            )
        if not isinstance(self.optimizer, LBFGSConfig | GaussNewtonConfig):
            raise ConfigError(
                f"LEVDA.optimizer={self.optimizer!r}: expected LBFGSConfig or GaussNewtonConfig"
            )
        if self.model_error is not None and not isinstance(
            self.model_error, ModelErrorTerm | FieldAnalysis
        ):
            raise ConfigError(
                f"LEVDA.model_error={self.model_error!r}: expected ModelErrorTerm(), "
                "FieldAnalysis() or None"
            )
        hybrid = self.static_covariance
        if hybrid is not None and not isinstance(hybrid, HybridCovariance):
            raise ConfigError(
                f"LEVDA.static_covariance={hybrid!r}: expected HybridCovariance(...) or None"
            )
        if not isinstance(self.bounded_parameters, bool):
            raise ConfigError(
                f"LEVDA.bounded_parameters must be a bool, got {self.bounded_parameters!r}"
            )
        if self.bounded_parameters and hybrid is not None and hybrid.parameters:
            raise ConfigError(
                "LEVDA.bounded_parameters=True with HybridCovariance(parameters=True): the "
                "static covariance of the parameters is not in the bounded coordinates; "
                "set bounded_parameters=False or parameters=False"
            )

    def initial(self, model: Surrogate, background: Any, run: RunOptions) -> Ensemble:
        """From fields, given parameters or prior draws (:func:`xlevda.initial.latent_ensemble`)."""
        return latent_ensemble(model, background, run)

    def plan(self, table: ObsTable, anchor: int) -> list[PlannedWindow]:
        """Windows of ``window`` (times or a duration) every ``window_stride``."""
        return plan_windows(table, self.window, self.window_stride, anchor)

    def analyse(
        self, model: Surrogate, window: Window, background: Ensemble, run: RunOptions
    ) -> Analysis:
        """One window: the background is the previous analysis propagated to the anchor."""
        zb, replaced = finite_background(background_state(model, background, window.anchor, run))
        obs_w = obs_window(
            window.obs, window.anchor, model.schema.n_channels, run.torch_dtype, run.device
        )
        seed = run.seed * 1_000_003 + window.index
        hybrid = self.static_covariance
        static_sqrt = None if hybrid is None else prior_static_sqrt(model, hybrid, run)
        bounds = parameter_bounds(model, zb) if self.bounded_parameters else None
        solver = model if bounds is None else BoundedSurrogate(model, bounds)
        try:
            res = solve_window(
                solver,
                zb if bounds is None else bounds.unbounded(zb),
                obs_w,
                inflation=self.inflation,
                member_mode=self.member_mode,
                optimizer=self.optimizer,
                inflation_seed=seed,
                noise_seed=hash((0, seed)) % 2**62,
                hybrid=hybrid,
                static_sqrt=static_sqrt,
            )
        except ConfigError as err:
            w = window.index
            if w == 0 or "no spread" not in str(err):
                raise
            raise ConfigError(
                f"window {w}: the background (window {w - 1}'s analysis propagated) has "
                "collapsed: every member converged to the same minimum, as shared-cost members "
                "do on a convex cost. Use member_mode=RandomizedMaximumLikelihood() or "
                "Inflation(additive > 0)"
            ) from err
        z_a = res.z_analysis if bounds is None else bounds.bounded(res.z_analysis)
        residuals = None
        if isinstance(self.model_error, FieldAnalysis):
            calibrate = self.model_error.calibrate
            residuals = window_residuals(
                res.decoded.detach(), obs_w, window.anchor, seed, calibrate=calibrate
            )
        return single(
            window.anchor,
            z_a,
            {k: getattr(res, k).detach().cpu().numpy() for k in DIAGNOSTICS if k != "replaced"}
            | {"replaced": replaced.cpu().numpy()},
            res.n_obs,
            np.stack([t.detach().cpu().double().numpy() for t in res.excess]),
            residuals,
        )


def finite_background(zb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``zb`` (K, d_z) with each member that is not finite replaced by the finite members'
    mean, and which were replaced (K,).

    A member whose forecast failed (the surrogate returned NaN or inf) would otherwise
    stop the whole cycle; restarted from the mean, it regains spread from its own
    perturbed prior centre and data in the analysis.  Fewer than two finite members
    leave nothing to restart from: a :class:`~xlevda.errors.VariableError`.

    Examples
    --------
    >>> z, bad = finite_background(torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [3.0, 4.0]]))
    >>> z.tolist(), bad.tolist()
    ([[1.0, 2.0], [2.0, 3.0], [3.0, 4.0]], [False, True, False])
    """
    bad = ~torch.isfinite(zb).all(-1)
    if not bool(bad.any()):
        return zb, bad
    if int((~bad).sum()) < 2:
        raise VariableError(
            f"the background ensemble is not finite for {int(bad.sum())} of {len(bad)} "
            "members (the surrogate's forecast failed): fewer than 2 finite members remain"
        )
    return torch.where(bad[:, None], zb[~bad].mean(0), zb), bad


def parameter_bounds(model: Surrogate, like: torch.Tensor) -> ParameterBounds | None:
    """The training range of ``model``'s parameters in its normalized units, as ``like``.

    ``None`` for a model without parameters or a simulator (no training range).
    """
    schema = model.schema
    if isinstance(model, FullStateModel) or not schema.params:
        return None
    ends = np.asarray(schema.param_range, float).reshape(len(schema.params), 2).T
    lo, hi = np.sort(schema.param_norm.normalize(ends), axis=0)
    return ParameterBounds(torch.as_tensor(lo).to(like), torch.as_tensor(hi).to(like))


_STATIC_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)
_STATIC_LOCK = threading.Lock()


def prior_static_sqrt(model: Surrogate, hybrid: HybridCovariance, run: RunOptions) -> torch.Tensor:
    """``L`` (d_z, r_c) of ``model``'s rollouts over its parameter prior, cached per model.

    ``hybrid.samples`` initial states as :meth:`LEVDA.initial` draws them without a
    background (seed 0), rolled out over the training frames
    (:func:`~xlevda.core.hybrid.rollout_square_root`).  Computed once per model,
    ``rank``, ``samples``, dtype and device: the windows and cases of an analysis share it.
    """
    key = (hybrid.rank, hybrid.samples, hybrid.parameters, run.torch_dtype, str(run.device))
    with _STATIC_LOCK:
        cached = _STATIC_CACHE.setdefault(model, {}).get(key)
        if cached is None:
            draws = latent_ensemble(model, None, replace(run, members=hybrid.samples, seed=0))
            z0 = torch.as_tensor(draws.z, dtype=run.torch_dtype, device=run.device)
            cached = rollout_square_root(model, z0, draws.anchor, hybrid.rank, hybrid.parameters)
            _STATIC_CACHE[model][key] = cached
    return cached
