"""Window lengths: a count of distinct observation times or a duration, and their checks.

No torch, no xarray: the configs (:class:`~xlevda.methods.LEVDA`,
:class:`~xlevda.methods.FourDEnVar`) validate their ``window`` here, and
:func:`xlevda._obs.plan_windows` reads durations with :func:`duration`.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from xlevda.errors import ConfigError
from xlevda.validate import is_int

__all__ = ["WindowLength", "check_window", "duration"]

WindowLength = int | str | timedelta | np.timedelta64
"""A window's length or stride: a count of distinct observation times, or a duration."""

_DURATION_TYPES = (
    "a numpy.timedelta64, datetime.timedelta, pandas.Timedelta or a string such as '6h'"
)


def duration(value: object) -> np.timedelta64 | None:
    """``value`` as a ``timedelta64[ns]`` if it is a duration, ``None`` if it is not.

    Durations are ``numpy.timedelta64`` (with units), ``datetime.timedelta``,
    ``pandas.Timedelta`` or strings pandas understands with a unit (``"6h"``,
    ``"90min"``); the result may be zero, negative or NaT (:func:`check_window`
    rejects those).

    Raises
    ------
    ValueError
        For a string that is not a duration.

    Examples
    --------
    >>> duration("6h"), duration(5)
    (np.timedelta64(21600000000000,'ns'), None)
    """
    if isinstance(value, np.timedelta64):
        if np.datetime_data(value.dtype)[0] == "generic":
            raise ValueError("a numpy.timedelta64 without units")
        return value.astype("timedelta64[ns]")
    if isinstance(value, str) and not any(c.isalpha() for c in value):
        raise ValueError(f"{value!r} has no unit")
    if isinstance(value, str | timedelta):
        parsed = pd.Timedelta(value)
        return (
            np.timedelta64("NaT", "ns") if parsed is pd.NaT else np.timedelta64(parsed.value, "ns")
        )
    return None


def _positive_duration(value: object) -> np.timedelta64 | None:
    """``value`` as a duration if it is a positive finite one, else ``None``."""
    try:
        d = duration(value)
    except ValueError:
        return None
    return d if d is not None and not np.isnat(d) and d > np.timedelta64(0, "ns") else None


def check_window(window: object, stride: object, owner: str) -> None:
    """Raise :class:`~xlevda.errors.ConfigError` unless ``window``/``stride`` are valid.

    ``window``: an integer >= 1 (distinct observation times) or a positive, finite
    duration; ``stride``: ``None`` or of the same kind, at most ``window``.
    ``owner`` names the config in the message (``"LEVDA"``).

    Examples
    --------
    >>> check_window("6h", "2h", "LEVDA")
    >>> try:
    ...     check_window("6h", 3, "LEVDA")
    ... except ConfigError as err:
    ...     print(err)  # doctest: +ELLIPSIS
    LEVDA.window_stride=3: expected a positive duration at most window='6h' (...), or None
    """
    length = _positive_duration(window)
    if length is None and (isinstance(window, np.timedelta64) or not is_int(window, 1)):
        raise ConfigError(
            f"{owner}.window={window!r}: expected an integer >= 1 (distinct observation times "
            f"per window) or a positive, finite duration ({_DURATION_TYPES})"
        )
    if stride is None:
        return
    if length is None:
        if isinstance(stride, np.timedelta64) or not is_int(stride, 1) or stride > window:
            raise ConfigError(
                f"{owner}.window_stride={stride!r}: expected an integer with 1 <= stride <= "
                f"window={window!r} (or None)"
            )
        return
    step = _positive_duration(stride)
    if step is None or step > length:
        raise ConfigError(
            f"{owner}.window_stride={stride!r}: expected a positive duration at most "
            f"window={window!r} ({_DURATION_TYPES}), or None"
        )
