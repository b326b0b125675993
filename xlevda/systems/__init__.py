"""Benchmark simulators producing CF-labelled Datasets, and observation samplers."""

from xlevda.systems import observe, tsunami

__all__ = ["observe", "tsunami"]
