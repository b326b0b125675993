"""Observations: from an xarray Dataset to a flat, normalized table, and into windows.

The table is numpy (no torch): one row per scalar observation, sorted by time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from xlevda._convert import domain_tolerance, find_time, spatial_layout
from xlevda._coords import renamed
from xlevda._obs_checks import (
    STD_SUFFIX,
    check_dataset,
    check_dims,
    check_errors,
    observed_variables,
)
from xlevda._times import time_values, times_to_steps
from xlevda._window_length import WindowLength, duration
from xlevda.errors import ObservationError
from xlevda.surrogates.schema import SurrogateSchema, is_longitude
from xlevda.validate import real_array

__all__ = ["ObsTable", "Window", "obs_table", "plan_windows"]


@dataclass(frozen=True)
class ObsTable:
    """Observations flattened to one row per scalar value, sorted by time.

    Attributes
    ----------
    time : ndarray (M,)
        Observation times as given (datetime64 or numbers).
    step, frac : ndarray (M,)
        Latent step (frame index) and eq. 17 fraction of each time.
    points : ndarray (M, n_coords)
        Normalized positions.
    channel : ndarray (M,) of int
        Index of the observed variable among the surrogate's outputs.
    value, std : ndarray (M,)
        Observed value and error standard deviation, normalized per channel.
    n_dropped : int
        Observed values outside the surrogate's domain dropped on request.
    """

    time: np.ndarray
    step: np.ndarray
    frac: np.ndarray
    points: np.ndarray
    channel: np.ndarray
    value: np.ndarray
    std: np.ndarray
    n_dropped: int = 0

    def __len__(self) -> int:
        return len(self.value)

    def select(self, index: np.ndarray) -> ObsTable:
        """Rows ``index`` of the table."""
        return ObsTable(
            self.time[index],
            self.step[index],
            self.frac[index],
            self.points[index],
            self.channel[index],
            self.value[index],
            self.std[index],
            self.n_dropped,
        )


def _as_points(obs: xr.Dataset, coords: tuple[str, ...]) -> tuple[xr.Dataset, str, tuple]:
    """Observations with one observation dimension (gridded input is stacked).

    Also returns the dims every observed variable must have in ``obs`` as given:
    ``(time, *space)`` for a grid, ``(obs_dim,)`` for points.
    """
    time = find_time(obs)
    if obs[time].ndim == 1 and obs[time].dims == (time,):
        layout = spatial_layout(obs, coords)
        if layout.gridded or layout.curvilinear:
            stacked = obs.stack(obs=(time, *layout.dims)).reset_index("obs")
            return stacked, "obs", (time, *layout.dims)
    dims = obs[time].dims
    if len(dims) != 1:
        raise ObservationError(
            f"observation time coordinate {time!r} has dims {dims}: expected one observation "
            "dimension, or a gridded Dataset with dims (time, space...)"
        )
    for c in coords:
        if c not in obs.coords:
            raise ObservationError(
                f"observations lack the position coordinate {c!r}; coordinates are "
                f"{sorted(map(str, obs.coords))}"
            )
        if obs[c].dims != dims:
            raise ObservationError(
                f"observation coordinate {c!r} has dims {obs[c].dims}, expected {dims} "
                "(one position per observation)"
            )
    return obs, dims[0], dims


def _longitudes(values: np.ndarray, name: str, lo: float, hi: float) -> np.ndarray:
    if values.min() < 0 and values.max() > 180:
        raise ObservationError(
            f"observation coordinate {name!r} mixes longitude conventions: values from "
            f"{values.min():.6g} to {values.max():.6g} (expected all in -180..180 or all in 0..360)"
        )
    if hi <= 180 and values.max() > 180:
        return np.where(values > 180, values - 360, values)
    if lo >= 0 and values.min() < 0:
        return np.where(values < 0, values + 360, values)
    return values


def obs_table(
    obs: xr.Dataset,
    schema: SurrogateSchema,
    *,
    variables: Sequence[str] | None = None,
    errors: Mapping[str, float] | None = None,
    outside: str = "error",
    time_range: tuple | None = None,
    coords: Mapping[str, str] | Sequence[str] | None = None,
) -> ObsTable:
    """Flatten an observation Dataset into a normalized :class:`ObsTable`.

    Parameters
    ----------
    obs : Dataset
        Either one observation dimension with coordinates time and position per
        observation (moving sensors, irregular times), or a gridded Dataset with
        dims ``(time, *space)`` where NaN marks "not observed".  In both forms a
        NaN value means that variable is not observed there; the used counts are
        reported by the caller; observations where every observed variable is NaN
        need no time or position (cases padded to one length).  Every observed
        variable is on the observation dimension (or the grid's dims); its
        ``<var>_std`` on some of them.
    schema : SurrogateSchema
        The surrogate's schema (variables, coordinates, normalization, time axis).
    variables : sequence of str, optional
        Observed variables to use; by default every data variable that is not an
        error standard deviation (``<var>_std``).
    errors : mapping of str to float, optional
        Error standard deviation per variable, for variables without ``<var>_std``.
    outside : {"error", "drop"}
        What to do with observations outside the surrogate's spatial domain.
    time_range : (start, end), optional
        Observations outside this closed interval are an error.
    coords : mapping or sequence of str, optional
        The observations' position coordinates: ``{surrogate coordinate: name}`` or
        one name per surrogate coordinate.  By default each surrogate coordinate is
        found by name, then by CF identity (standard name, units, axis), then by a
        common name (:func:`xlevda._coords.match_coords`); none or several is an error.

    Returns
    -------
    ObsTable

    Raises
    ------
    ObservationError
        For anything but real values (NaN where not observed), positive finite
        errors and finite positions, each message naming the variable or coordinate.
    CoordinateError
        For missing, NaT or non-datetime times (:func:`xlevda._times.time_values`).
    """
    if outside not in ("error", "drop"):
        raise ObservationError(f"outside={outside!r}: expected 'error' or 'drop'")
    check_dataset(obs)
    time = find_time(obs)
    obs = renamed(obs, schema, coords, error=ObservationError, what="observations", exclude=[time])
    errors = check_errors(errors, schema)
    names = observed_variables(obs, variables, schema)
    points_obs, obs_dim, dims = _as_points(obs, schema.coords)
    check_dims(obs, names, dims, errors)
    obs = _observed_rows(points_obs, obs_dim, names)
    time = find_time(obs)
    t = np.asarray(obs[time].values)
    step, frac = times_to_steps(t, schema, name=f"observation {time}", extrapolate=True)
    t = time_values(t, f"observation {time}")
    pos = np.stack(
        [
            real_array(f"observation coordinate {c!r}", obs[c].values, ObservationError, nan=False)
            for c in schema.coords
        ],
        -1,
    )
    _wrap_longitudes(pos, schema)
    if time_range is not None:
        _check_time_range(t, step + frac, time_range, schema)
    points, inside = schema.embed(
        pos, domain_tolerance([obs[c].dtype for c in schema.coords], schema)
    )
    if not inside.all() and outside == "error":
        j = int(np.argmin(inside))
        raise ObservationError(
            f"{int((~inside).sum())} observation(s) lie outside the surrogate's domain, e.g. "
            + ", ".join(f"{c}={pos[j, i]:.6g}" for i, c in enumerate(schema.coords))
            + "; pass outside='drop' to drop them (their count is reported)"
        )
    rows = [_variable_rows(obs, v, schema, errors, inside) for v in names]
    idx = np.concatenate([r[0] for r in rows])
    order = np.argsort(t[idx], kind="stable")
    idx = idx[order]
    return ObsTable(
        time=t[idx],
        step=step[idx],
        frac=frac[idx],
        points=points[idx],
        channel=np.concatenate([r[1] for r in rows])[order],
        value=np.concatenate([r[2] for r in rows])[order],
        std=np.concatenate([r[3] for r in rows])[order],
        n_dropped=sum(r[4] for r in rows),
    )


def _observed_rows(obs: xr.Dataset, obs_dim: str, names: Sequence[str]) -> xr.Dataset:
    """The observations where some variable of ``names`` is not NaN (values checked real)."""
    if obs.sizes[obs_dim] == 0:
        raise ObservationError(f"observations are empty: dimension {obs_dim!r} has length 0")
    observed = np.zeros(obs.sizes[obs_dim], bool)
    for v in names:
        values = real_array(f"observed variable {v!r}", obs[v].values, ObservationError)
        observed |= ~np.isnan(values)
    if not observed.any():
        raise ObservationError(f"observed variable {names[0]!r} holds only NaN values")
    return obs if observed.all() else obs.isel({obs_dim: np.flatnonzero(observed)})


def _wrap_longitudes(pos: np.ndarray, schema: SurrogateSchema) -> None:
    """Wrap the longitudes of positions ``(n, n_coords)`` onto a plane schema's range, in place."""
    for j, c in enumerate(schema.coords):
        if schema.geometry == "plane" and is_longitude(c, schema.coord_attrs[j]):
            lo = schema.coord_norm.offset[j] - schema.coord_norm.scale[j]
            hi = schema.coord_norm.offset[j] + schema.coord_norm.scale[j]
            pos[:, j] = _longitudes(pos[:, j], c, lo, hi)


def _check_time_range(t: np.ndarray, x: np.ndarray, time_range: tuple, schema) -> None:
    """Raise unless every observation time (fractional step ``x``) lies in ``time_range``."""
    start, end = time_range
    range_step, range_frac = times_to_steps([start, end], schema, extrapolate=True)
    lo, hi = range_step + range_frac
    bad = (x < lo - 1e-6) | (x > hi + 1e-6)  # a millionth of a step absorbs rounding
    if bad.any():
        raise ObservationError(
            f"{int(bad.sum())} observation time(s) outside the analysis time range "
            f"[{start}, {end}], e.g. {t[bad][0]}"
        )


def _variable_rows(obs: xr.Dataset, v: str, schema: SurrogateSchema, errors, inside):
    """Indices, channel, normalized values and stds of the usable observations of ``v``,
    and the number of its values outside the domain (dropped)."""
    c = schema.variables.index(v)
    value = real_array(f"observed variable {v!r}", obs[v].values, ObservationError)
    std = _std_of(obs, v, errors)
    if not np.isfinite(value).any():
        raise ObservationError(f"observed variable {v!r} holds only NaN values")
    ok = np.isfinite(value) & inside
    bad = ~np.isfinite(std[ok]) | (std[ok] <= 0)
    if bad.any():
        raise ObservationError(
            f"observation error std of {v!r} must be finite and > 0, got {std[ok][bad][0]} "
            f"(at {int(bad.sum())} of the {int(ok.sum())} observed values)"
        )
    idx = np.nonzero(ok)[0]
    scale = schema.output_norm.scale[c]
    return (
        idx,
        np.full(len(idx), c),
        (value[idx] - schema.output_norm.offset[c]) / scale,
        std[idx] / scale,
        int((np.isfinite(value) & ~inside).sum()),
    )


def _std_of(obs: xr.Dataset, v: str, errors: Mapping[str, float]) -> np.ndarray:
    name = v + STD_SUFFIX
    if name in obs.variables:
        std = obs[name].broadcast_like(obs[v]).transpose(*obs[v].dims)
        return real_array(f"observation error {name!r}", std.values, ObservationError)
    if v in errors:
        return np.full(obs[v].shape, float(errors[v]))
    raise ObservationError(
        f"no observation error for {v!r}: add a variable {name!r} or pass errors={{{v!r}: std}}"
    )


@dataclass(frozen=True)
class Window:
    """One assimilation window.

    Attributes
    ----------
    anchor : int
        Latent index of the window-initial state (``-1`` is the shifted start
        ``s_{-1} = 0`` of the first window).
    rows : ndarray of int
        Rows of the :class:`ObsTable` assimilated in this window.
    """

    anchor: int
    rows: np.ndarray


def plan_windows(
    table: ObsTable,
    size: WindowLength,
    stride: WindowLength | None = None,
    first_anchor: int = -1,
) -> list[Window]:
    """Group observation times into windows of ``size`` distinct times or of a duration.

    Windows start every ``stride`` (``stride = size``, the default, gives
    non-overlapping windows; ``stride < size`` overlaps).  The first window is
    anchored at ``first_anchor`` (the latent index of the initial ensemble: ``-1``,
    the shifted start, by default), every later one at the latent step of its first
    observation time.

    A count ``size`` (an integer) puts ``size`` distinct observation times in each
    window, starting every ``stride`` of them.  A duration ``size`` (see
    :func:`duration`; the observation times must be datetimes) puts in window ``k``
    the observations in ``[t0 + k stride, t0 + k stride + size)``, where ``t0`` is
    the first observation time (not the initial ensemble's time), skips windows that
    hold no observation (gaps), and ends with the first window that holds the last
    observation time.  On observations every ``dt`` from ``t0``, ``size = n dt``
    gives the windows of ``size = n``.

    Examples
    --------
    >>> import dataclasses
    >>> import numpy as np
    >>> t = ObsTable(np.arange(4.0), np.arange(4), np.zeros(4), np.zeros((4, 1)),
    ...              np.zeros(4, int), np.zeros(4), np.ones(4))
    >>> [(w.anchor, w.rows.tolist()) for w in plan_windows(t, 2)]
    [(-1, [0, 1]), (2, [2, 3])]
    >>> hours = np.datetime64("2026-01-01T00", "ns") + np.array([0, 1, 4, 5], "timedelta64[h]")
    >>> drifter = dataclasses.replace(t, time=hours)
    >>> [(w.anchor, w.rows.tolist()) for w in plan_windows(drifter, "3h")]
    [(-1, [0, 1]), (2, [2, 3])]
    """
    key = table.step + table.frac
    if len(key) and key.min() < first_anchor:
        raise ObservationError(
            f"{int((key < first_anchor).sum())} observation(s) precede the initial ensemble's "
            f"time (latent index {first_anchor}), e.g. at {table.time[np.argmin(key)]}"
        )
    length, step = duration(size), duration(size if stride is None else stride)
    if (length is None) != (step is None):
        raise ObservationError(
            f"window {size!r} every {stride!r}: expected two counts or two durations"
        )
    if length is not None:
        bounds = _duration_bounds(table, length, step)
    else:
        bounds = _count_bounds(key, size, stride)
    windows = []
    for lo, hi in bounds:
        rows = np.arange(lo, hi)
        anchor = first_anchor if not windows else int(table.step[rows[0]])
        windows.append(Window(anchor, rows))
    return windows


def _count_bounds(key: np.ndarray, size: int, stride: int | None) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of windows of ``size`` distinct keys every ``stride`` keys."""
    if size < 1:
        raise ObservationError(f"window size tau={size}: expected >= 1 observation time")
    stride = size if stride is None else stride
    if not 1 <= stride <= size:
        raise ObservationError(f"window stride {stride}: expected 1 <= stride <= tau={size}")
    unique = np.unique(key)
    bounds = []
    for start in range(0, len(unique), stride):
        sel = unique[start : start + size]
        bounds.append(
            (int(np.searchsorted(key, sel[0], "left")), int(np.searchsorted(key, sel[-1], "right")))
        )
        if start + size >= len(unique):
            break
    return bounds


def _duration_bounds(
    table: ObsTable, length: np.timedelta64, stride: np.timedelta64
) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of the non-empty windows ``[t0 + k stride, ... + length)``."""
    if not np.issubdtype(table.time.dtype, np.datetime64):
        raise ObservationError(
            f"window of duration {length} needs datetime observation times, but they are "
            f"numbers ({table.time.dtype}; the surrogate was trained on numeric times): give "
            "the window as a count of observation times"
        )
    zero = np.timedelta64(0, "ns")
    if np.isnat(length) or np.isnat(stride) or not zero < stride <= length:
        raise ObservationError(
            f"window {length} every {stride}: expected positive durations, stride <= window"
        )
    if len(table) == 0:
        return []
    t = table.time.astype("datetime64[ns]").astype(np.int64)
    n, s = int(length.astype(np.int64)), int(stride.astype(np.int64))
    rel = np.unique(t) - t[0]
    # window k holds time r iff k s <= r < k s + n: k from (r - n) // s + 1 to r // s
    first, last = np.maximum((rel - n) // s + 1, 0), rel // s
    ks = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last, strict=True)]))
    ks = ks[ks <= first[-1]]  # up to the first window that holds the last time
    lo = np.searchsorted(t, t[0] + ks * s, "left")
    hi = np.searchsorted(t, t[0] + ks * s + n, "left")
    return [(int(a), int(b)) for a, b in zip(lo, hi, strict=True)]
