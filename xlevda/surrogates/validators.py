"""Field checks of the surrogates' frozen config dataclasses (no torch).

Each check raises :class:`~xlevda.errors.ConfigError` naming the field, the value
and the valid range.
"""

from __future__ import annotations

import math

from xlevda.errors import ConfigError

__all__ = ["check_choice", "check_float", "check_int"]


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> None:
    """Raise unless ``value`` is an integer (not a bool) in ``[lo, hi]`` (``hi=None``: no bound).

    Examples
    --------
    >>> check_int("n", 3, 1)
    >>> check_int("n", 0, 1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: n must be an integer >= 1, got 0
    """
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and value >= lo and (hi is None or value <= hi):
        return
    valid = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    raise ConfigError(f"{name} must be an integer {valid}, got {value!r}")


def check_float(
    name: str,
    value: object,
    lo: float,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """Raise unless ``value`` is a finite number (not a bool) between ``lo`` and ``hi``.

    The bounds are included unless ``lo_open`` / ``hi_open``.

    Examples
    --------
    >>> check_float("lr", 0.1, 0.0, lo_open=True)
    >>> check_float("lr", 0.0, 0.0, lo_open=True)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: lr must be a finite number in (0.0, inf), got 0.0
    """
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        above = value > lo if lo_open else value >= lo
        below = value < hi if hi_open else value <= hi
        if above and below:
            return
    valid = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open or hi == math.inf else ']'}"
    raise ConfigError(f"{name} must be a finite number in {valid}, got {value!r}")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``.

    Examples
    --------
    >>> check_choice("activation", "tanh", ("tanh", "silu"))
    """
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
