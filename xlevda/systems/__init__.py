"""Benchmark simulators producing CF-labelled Datasets, and observation samplers."""

from xlevda.systems import kolmogorov, observe, sphere, tsunami

__all__ = ["kolmogorov", "observe", "sphere", "tsunami"]
