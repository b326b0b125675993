"""Checks of config values, shared by every config of the package (no torch, no xarray).

Predicates (:func:`is_int`, :func:`is_real`, :func:`is_positive`) answer ``True`` or
``False`` for checks whose message says more than a range.  Checks (:func:`check_int`,
:func:`check_real`, :func:`check_choice`) raise :class:`~xlevda.errors.ConfigError` in one
format: ``"<name> must be <what is expected>, got <value>"``.  :func:`real_array` checks
the values of an array (observations, positions, parameters) the same way, with the error
class its caller names.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np

from xlevda.errors import ConfigError, XlevdaError

__all__ = [
    "check_choice",
    "check_int",
    "check_real",
    "is_int",
    "is_positive",
    "is_real",
    "real_array",
]


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


_KINDS = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "objects"}


def _example(values: np.ndarray, bad: np.ndarray) -> str:
    """How many of ``values`` are ``bad``, and the first of them, as text."""
    first = values.ravel()[np.argmax(bad.ravel())]
    first = first.item() if isinstance(first, np.generic) else first
    return f"{int(bad.sum())} of {bad.size}, e.g. {first!r}"


def real_array(
    name: str, values: object, error: type[XlevdaError] = ConfigError, *, nan: bool = True
) -> np.ndarray:
    """``values`` as a float64 array, or raise ``error`` unless they are real numbers.

    Integers and floats pass; booleans, complex numbers, strings, dates and objects
    (``None``, ``pandas`` values) do not, nor do infinite values, nor NaN unless
    ``nan`` (NaN marks a missing value where the caller allows one).

    Parameters
    ----------
    name : str
        How the message names the values, e.g. ``"observed variable 'eta'"``.
    values : array-like
    error : type of XlevdaError
        The class to raise.
    nan : bool
        Whether NaN values pass.

    Examples
    --------
    >>> real_array("x", [1, 2.5]).tolist()
    [1.0, 2.5]
    >>> try:
    ...     real_array("x", [1.0, float("inf"), 2.0])
    ... except ConfigError as err:
    ...     print(err)
    x must hold finite real numbers, got infinite values: 1 of 3, e.g. inf
    >>> real_array("x", ["1", "2"])
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: x must hold real numbers, got strings (dtype <U1): 2 of 2, e.g. '1'
    """
    array = np.asarray(values)
    if array.dtype.kind == "O":
        bad = np.array(
            [isinstance(v, bool) or not isinstance(v, Real) for v in array.ravel()], bool
        )
        if not bad.any():
            array = array.astype(float)
    if array.dtype.kind not in "iuf":
        kind = _KINDS.get(array.dtype.kind, "values")
        bad = bad.reshape(array.shape) if array.dtype.kind == "O" else np.ones(array.shape, bool)
        raise error(
            f"{name} must hold real numbers, got {kind} (dtype {array.dtype})"
            + (f": {_example(array, bad)}" if array.size else "")
        )
    array = array.astype(float)
    for bad, what in ((np.isinf(array), "infinite values"), (np.isnan(array), "NaN")):
        if bad.any() and (what != "NaN" or not nan):
            raise error(f"{name} must hold finite real numbers, got {what}: {_example(array, bad)}")
    return array
