"""Checks of config values, shared by every config of the package (no torch, no xarray).

Predicates (:func:`is_int`, :func:`is_real`, :func:`is_positive`) answer ``True`` or
``False`` for checks whose message says more than a range.  Checks (:func:`check_int`,
:func:`check_real`, :func:`check_choice`) raise :class:`~xlevda.errors.ConfigError` in one
format: ``"<name> must be <what is expected>, got <value>"``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from xlevda.errors import ConfigError

__all__ = ["check_choice", "check_int", "check_real", "is_int", "is_positive", "is_real"]


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


def check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    """Raise unless ``value`` is an integer (not a bool) in ``[low, high]``.

    Parameters
    ----------
    name : str
        How the message names the value, e.g. ``"LBFGSConfig.max_iter"``.
    value : object
    low : int
        Smallest valid value.
    high : int, optional
        Largest valid value (default: no bound).

    Raises
    ------
    ConfigError

    Examples
    --------
    >>> check_int("n", 3, 1)
    >>> check_int("n", 0, 1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: n must be an integer >= 1, got 0
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return
    valid = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ConfigError(f"{name} must be an integer {valid}, got {value!r}")


def check_real(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> None:
    """Raise unless ``value`` is a number (not a bool, not NaN) between ``low`` and ``high``.

    Parameters
    ----------
    name : str
        How the message names the value.
    value : object
    low, high : float
        Bounds, included unless ``low_open`` / ``high_open``.
    low_open, high_open : bool
        Exclude the bound.
    finite : bool
        Reject infinite values (default); with ``False``, ``inf`` passes when ``high`` is
        ``inf`` and included.

    Raises
    ------
    ConfigError

    Examples
    --------
    >>> check_real("lr", 0.1, 0.0, low_open=True)
    >>> check_real("lr", 0.0, 0.0, low_open=True)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: lr must be a finite number in (0.0, inf), got 0.0
    >>> check_real("tol", math.inf, 0.0, finite=False)
    >>> check_real("c1", -1.0, 0.0, 1.0, finite=False)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: c1 must be a number in [0.0, 1.0], got -1.0
    """
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(value)
        and (math.isfinite(value) or not finite)
    )
    if ok:
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if above and below:
            return
    opening = "(" if low_open else "["
    closing = ")" if high_open or (finite and high == math.inf) else "]"
    kind = "a finite number" if finite else "a number"
    raise ConfigError(f"{name} must be {kind} in {opening}{low}, {high}{closing}, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``.

    Examples
    --------
    >>> check_choice("activation", "tanh", ("tanh", "silu"))
    >>> check_choice("activation", "relu", ("tanh", "silu"))
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: activation must be one of ('tanh', 'silu'), got 'relu'
    """
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
