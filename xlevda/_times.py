"""Times: checked (datetime64 without NaT, or finite numbers) and mapped to latent steps.

Times of other kinds (strings, timezone-aware, cftime, pandas Periods) are refused
with how to convert them; :func:`times_to_steps` maps times to the latent
``(step, fraction)`` pairs of paper eq. 17.
"""

from __future__ import annotations

import datetime
from numbers import Real

import numpy as np
import pandas as pd

from xlevda.errors import CoordinateError
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.validate import real_array

__all__ = ["frame_times", "time_numbers", "time_values", "times_to_steps"]


def _object_times(values: np.ndarray, name: str) -> np.ndarray:
    """Times held as Python objects: naive datetimes or numbers converted, others refused."""
    flat = values.ravel()
    if all(isinstance(v, Real) and not isinstance(v, bool) for v in flat):
        return values.astype(float)
    naive = [isinstance(v, datetime.datetime) and v.tzinfo is None for v in flat]
    if all(naive):
        return pd.to_datetime(flat).to_numpy("datetime64[ns]").reshape(values.shape)
    first = flat[np.argmin(naive)]
    kind = type(first).__module__.split(".")[0]
    if isinstance(first, datetime.datetime) and first.tzinfo is not None:
        hint = "timezone-aware times; convert them to naive UTC datetime64 (tz_convert(None))"
    elif kind == "cftime":
        hint = (
            f"cftime dates (calendar {getattr(first, 'calendar', '?')!r}); convert them to "
            "datetime64, e.g. with convert_calendar('standard', use_cftime=False)"
        )
    elif isinstance(first, pd.Period):
        hint = "pandas Periods; convert them with to_timestamp()"
    elif isinstance(first, str):
        hint = "strings; parse them with pandas.to_datetime"
    else:
        hint = f"objects of type {type(first).__name__}"
    raise CoordinateError(
        f"time coordinate {name!r} must hold datetime64 values or numbers, got {hint}; "
        f"e.g. {first!r}"
    )


def time_values(values: object, name: str) -> np.ndarray:
    """Time values checked: datetime64 without NaT, or finite real numbers.

    Naive Python datetimes (``datetime``, ``pandas.Timestamp``) become datetime64;
    strings, timezone-aware times, cftime dates and pandas Periods are refused with
    how to convert them.

    Raises
    ------
    CoordinateError
        Naming the coordinate ``name``, how many values are bad and an example.

    Examples
    --------
    >>> time_values(np.array(["2026-01-01", "NaT"], "datetime64[ns]"), "time")
    Traceback (most recent call last):
    ...
    xlevda.errors.CoordinateError: time coordinate 'time' holds NaT (not a time): 1 of 2 values
    """
    values = np.asarray(values)
    if values.dtype.kind == "O":
        values = _object_times(values, name)
    if values.dtype.kind == "M":
        if np.isnat(values).any():
            raise CoordinateError(
                f"time coordinate {name!r} holds NaT (not a time): "
                f"{int(np.isnat(values).sum())} of {values.size} values"
            )
        return values
    if values.dtype.kind in "US":
        raise CoordinateError(
            f"time coordinate {name!r} must hold datetime64 values or numbers, got strings "
            f"({values.dtype}); parse them with pandas.to_datetime"
        )
    return real_array(f"time coordinate {name!r}", values, CoordinateError, nan=False)


def time_numbers(values: np.ndarray, schema_is_datetime: bool, name: str) -> np.ndarray:
    """Checked times (:func:`time_values`) as numbers: seconds since 1970 for datetime64.

    Raises
    ------
    CoordinateError
        For datetime64 values where the surrogate has numeric times or the reverse.
    """
    values = time_values(values, name)
    if np.issubdtype(values.dtype, np.datetime64):
        if not schema_is_datetime:
            raise CoordinateError(
                f"time coordinate {name!r} holds datetime64 values, but the surrogate was "
                "trained on numeric times"
            )
        return values.astype("datetime64[ns]").astype(np.int64) / 1e9
    if schema_is_datetime:
        raise CoordinateError(
            f"time coordinate {name!r} holds numbers ({values.dtype}), but the surrogate was "
            "trained on datetime64 times"
        )
    return values.astype(float)


def frame_times(schema: SurrogateSchema) -> np.ndarray:
    """Times of the training frames (datetime64 or numbers, as in training).

    The exact times stored in the schema, or ``time_origin + k * time_step`` for
    files that predate them.

    Examples
    --------
    >>> frame_times(SurrogateSchema.minimal(n_frames=3)).tolist()
    [0.0, 1.0, 2.0]
    """
    if schema.frame_times:
        return np.asarray(
            schema.frame_times, dtype="datetime64[ns]" if schema.time_is_datetime else float
        )
    k = np.arange(schema.n_frames)
    if schema.time_is_datetime:
        origin = np.datetime64(schema.time_origin, "ns")
        return origin + (k * schema.time_step * 1e9).round().astype("timedelta64[ns]")
    return float(schema.time_origin) + k * schema.time_step


def times_to_steps(
    times, schema: SurrogateSchema, *, name: str = "time", extrapolate: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Map times to latent ``(step, fraction)`` pairs (paper eq. 17).

    Frame ``k`` of the training data sits at ``time_origin + k * time_step``.

    Parameters
    ----------
    times : array-like of datetime64 or numbers
        Query times.
    schema : SurrogateSchema
    name : str
        Name used in error messages.
    extrapolate : bool
        Allow times after the last training frame (a forecast beyond the horizon
        the surrogate was trained on).

    Returns
    -------
    step : ndarray of int64
    frac : ndarray of float, in ``[0, 1)``

    Raises
    ------
    CoordinateError
        For times before frame 0, or after the last trained frame unless
        ``extrapolate``.
    """
    t = time_numbers(np.atleast_1d(times), schema.time_is_datetime, name)
    origin = (
        time_numbers(np.array([schema.time_origin], dtype="datetime64[ns]"), True, name)[0]
        if schema.time_is_datetime
        else float(schema.time_origin)
    )
    x = (t - origin) / schema.time_step
    x = np.where(np.abs(x - np.round(x)) < 1e-9, np.round(x), x)
    last = schema.n_frames - 1
    axis = f"(origin {schema.time_origin}, step {schema.time_step} {schema.time_units})"
    if (x < 0).any():
        raise CoordinateError(
            f"{name}={np.atleast_1d(times)[x < 0][0]} lies outside the surrogate's time range: "
            f"it precedes the first frame {axis} ({int((x < 0).sum())} of {x.size} times), "
            "before which the surrogate has no state"
        )
    if not extrapolate and (x > last).any():
        raise CoordinateError(
            f"{name}={np.atleast_1d(times)[x > last][0]} lies outside the surrogate's time "
            f"range: after its last trained frame {last} {axis}; pass extrapolate=True to "
            "forecast beyond the trained horizon"
        )
    step = np.floor(x).astype(np.int64)
    return step, x - step
