"""Checks of config values shared by the core configs; each raises ``ConfigError``."""

from __future__ import annotations

import math

import torch

from xlevda.errors import ConfigError

__all__ = ["check_int", "check_real", "check_seed"]


def check_int(name: str, value: object, low: int) -> None:
    """Raise unless ``value`` is an integer (not a bool) ``>= low``.

    Examples
    --------
    >>> check_int("max_iter", 3, 1)
    >>> check_int("max_iter", 0, 1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: max_iter=0 is out of range: must be an integer >= 1
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} is out of range: must be an integer >= {low}")


def check_real(
    name: str,
    value: object,
    low: float,
    high: float = math.inf,
    *,
    open_low: bool = False,
    finite: bool = False,
) -> None:
    """Raise unless ``value`` is a number (not a bool, not NaN) in ``[low, high]``.

    Parameters
    ----------
    name : str
        How the message names the value.
    value : object
    low, high : float
        Bounds, ``high`` included.
    open_low : bool
        Exclude ``low``: the interval is ``(low, high]``.
    finite : bool
        Reject infinite values too.

    Examples
    --------
    >>> check_real("tol", 0.5, 0.0)
    >>> check_real("eps", 0.0, 0.0, 1.0, open_low=True)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: eps=0.0 is out of range: must be a number in (0.0, 1.0]
    """
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and not math.isnan(value)
        and (math.isfinite(value) or not finite)
        and (value > low if open_low else value >= low)
        and value <= high
    )
    if not ok:
        bracket = "(" if open_low else "["
        raise ConfigError(
            f"{name}={value!r} is out of range: must be a number in {bracket}{low}, {high}]"
        )


def check_seed(name: str, seed: object) -> None:
    """Raise unless ``seed`` is an int ``>= 0`` (not a bool) or a ``torch.Generator``.

    Examples
    --------
    >>> check_seed("seed", 3)
    >>> check_seed("seed", -1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: seed=-1 is invalid: use an int >= 0 or a torch.Generator
    """
    if isinstance(seed, torch.Generator):
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name}={seed!r} is invalid: use an int >= 0 or a torch.Generator")
