"""Benchmark simulators producing CF-labelled Datasets, and observation samplers.

Each system's public face is one module with its config, parameter sampler and ``simulate``
(:mod:`~xlevda.systems.tsunami`, :mod:`~xlevda.systems.kolmogorov`,
:mod:`~xlevda.systems.sphere` with its config in :mod:`~xlevda.systems.sphere_config`,
:mod:`~xlevda.systems.lorenz96`); its numerics sit in a module of their own
(``tsunami_stepper``, ``kolmogorov_spectral``, ``sphere_transforms`` and ``sphere_dynamics``),
and :mod:`~xlevda.systems.simulator` holds the skeleton they share: batching over runs,
the progress bar and the CF-labelled Dataset.  :mod:`~xlevda.systems.tsunami_model` wraps
the tsunami stepper as a full-state model; :mod:`~xlevda.systems.observe` samples
observations.
"""

from xlevda.systems import kolmogorov, lorenz96, observe, sphere, sphere_config, tsunami

__all__ = ["kolmogorov", "lorenz96", "observe", "sphere", "sphere_config", "tsunami"]
