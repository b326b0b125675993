"""Errors raised by xlevda.

Every user-facing error is a subclass of :class:`XlevdaError`, itself a
:class:`ValueError`, so ``except ValueError`` keeps working for callers that do
not know about xlevda.  Messages name the variable, dimension or coordinate, the
value received and what was expected.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CoordinateError",
    "ObservationError",
    "ShapeError",
    "SurrogateFileError",
    "VariableError",
    "XlevdaError",
]


class XlevdaError(ValueError):
    """Base class of every error xlevda raises on bad input."""


class ConfigError(XlevdaError):
    """A configuration value is out of its valid range or of the wrong type."""


class CoordinateError(XlevdaError):
    """A time or spatial coordinate is missing, unrecognized or inconsistent."""


class VariableError(XlevdaError):
    """A data variable or parameter is unknown, missing or holds invalid values."""


class ShapeError(XlevdaError):
    """Arrays that must agree in shape do not."""


class SurrogateFileError(XlevdaError):
    """A saved surrogate file is corrupt, of another format version or of another kind."""


class ObservationError(XlevdaError):
    """Observations are malformed: missing positions, bad errors, outside the domain."""
