"""Benchmark simulators producing CF-labelled Datasets, and observation samplers."""

from xlevda.systems import kolmogorov, lorenz96, observe, sphere, tsunami

__all__ = ["kolmogorov", "lorenz96", "observe", "sphere", "tsunami"]
