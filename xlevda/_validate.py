"""Type checks shared by the frozen config dataclasses (no torch, no xarray)."""

from __future__ import annotations

import math
from numbers import Integral, Real

__all__ = ["is_int", "is_positive", "is_real"]


def is_int(value: object, low: int | None = None) -> bool:
    """An integer (not a bool), at least ``low`` if given.

    Examples
    --------
    >>> is_int(3), is_int(True), is_int(2.0), is_int(0, low=1)
    (True, False, False, False)
    """
    return (
        isinstance(value, Integral)
        and not isinstance(value, bool)
        and (low is None or value >= low)
    )


def is_real(value: object) -> bool:
    """A finite real number (not a bool).

    Examples
    --------
    >>> is_real(1), is_real(float("nan")), is_real(False)
    (True, False, False)
    """
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_positive(value: object) -> bool:
    """A finite real number > 0 (not a bool).

    Examples
    --------
    >>> is_positive(0.5), is_positive(0), is_positive(float("inf"))
    (True, False, False)
    """
    return is_real(value) and value > 0
