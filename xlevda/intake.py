"""Observations from the tables and station series users have, shaped for ``assimilate``.

:func:`observations` turns a pandas DataFrame, a CSV file, a station Dataset (variables
on time, position as scalar coordinates) or a list of stations into the Dataset that
:func:`xlevda.assimilate` takes: one observation dimension ``obs`` with the coordinates
``time`` and the positions, the observed values and their ``<var>_std``.  Column by
column, never through a dense (time, lat, lon) cube.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from xlevda._convert import find_time
from xlevda._obs_checks import STD_SUFFIX
from xlevda.errors import ObservationError
from xlevda.validate import is_positive, real_array

__all__ = ["OBS_DIM", "observations"]

OBS_DIM = "obs"
"""Name of the observation dimension of the Dataset :func:`observations` returns."""


def observations(
    source: pd.DataFrame | str | os.PathLike | xr.Dataset | Sequence[xr.Dataset],
    *,
    time: str | None = None,
    coords: Mapping[str, str] | Sequence[str] = ("lat", "lon"),
    variables: Sequence[str] | None = None,
    errors: Mapping[str, float] | None = None,
    drop_nan_positions: bool = False,
) -> xr.Dataset:
    """Observations for :func:`xlevda.assimilate` from a table, a CSV file or stations.

    Parameters
    ----------
    source : DataFrame, path, Dataset or list of Datasets
        A pandas DataFrame with one row per observation (an index, e.g. after
        ``set_index``, is read as columns); a path to a CSV file (read with
        ``pandas.read_csv``, then the same); a station Dataset whose variables lie on
        ``time`` and whose positions are scalar coordinates, or any Dataset whose
        time and position coordinates lie on some of its variables' dims (stations
        concatenated along a ``station`` dimension, NaN-padded to one length); or a
        list of such Datasets, which gain a coordinate ``station`` (their index in the
        list) unless they hold one.  A Dataset's coordinates are kept as columns when
        their dims are some of its data variables' dims (coordinates on other dims,
        such as ``time_bnds``, are left out).
    time : str, optional
        The column or coordinate of the observation times: ``"time"`` for a table, the
        Dataset's time coordinate (CF metadata, then common names) by default.  Strings
        and datetimes are parsed by pandas; times with a time zone or UTC offset are
        converted to UTC and stored without zone (naive UTC), as xarray stores times;
        numbers are kept as numbers (for surrogates trained on numeric times).
    coords : mapping or sequence of str
        The positions: ``{name: column}``, where ``name`` is the surrogate's coordinate
        (e.g. ``{"lat": "latitude", "lon": "longitude"}``), or names that are both.
    variables : sequence of str, optional
        Observed variables (columns or data variables).  By default every data
        variable of a Dataset, or column of a table, that is not the time, a position
        or a ``<var>_std``.  Other columns are kept as coordinates on ``obs`` (e.g.
        an identifier), listed in the attribute ``not_observed``: ``assimilate``
        reads only data variables.
    errors : mapping of str to float, optional
        Error standard deviation of observed variables without a ``<var>_std``
        column, stored as a scalar ``<var>_std``.  A variable with neither still
        needs ``errors=`` in ``assimilate``.
    drop_nan_positions : bool
        Observations with a missing time or position (NaN, NaT) raise an error that
        counts them by default; if True they are dropped and their count stored in
        the attribute ``n_dropped_nan_positions``.

    Returns
    -------
    Dataset
        Dims ``(obs,)``: coordinates ``time`` and the positions, the observed variables
        and their ``<var>_std``, the other columns as coordinates; rows in input order.

    Raises
    ------
    ObservationError
        If a named column is missing, a time cannot be parsed, positions or values
        are not real numbers, an error is not a finite number > 0 or given twice, or
        times or positions are missing (unless dropped); the message names the column.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({
    ...     "time": ["2026-01-01T00:00", "2026-01-01T01:00"],
    ...     "latitude": [41.0, 42.0], "longitude": [-158.0, -157.0],
    ...     "eta": [0.1, 0.2], "buoy": ["A", "B"]})
    >>> obs = observations(table, coords={"lat": "latitude", "lon": "longitude"},
    ...                    variables=["eta"], errors={"eta": 0.05})
    >>> obs.sizes["obs"], obs.time.dtype, float(obs.eta_std), obs.attrs["not_observed"]
    (2, dtype('<M8[ns]'), 0.05, 'buoy')
    >>> obs.buoy.values.tolist()
    ['A', 'B']
    """
    coords = _coord_mapping(coords)
    if not isinstance(drop_nan_positions, bool):
        raise ObservationError(
            f"drop_nan_positions must be True or False, got {drop_nan_positions!r}"
        )
    attrs: dict[str, Mapping] = {}
    if isinstance(source, (str, os.PathLike)):
        source = pd.read_csv(source)
    elif isinstance(source, xr.Dataset) or _is_dataset_list(source):
        source, time, attrs, data_vars = _stations_table(source, time, coords)
        variables = data_vars if variables is None else variables
    if not isinstance(source, pd.DataFrame):
        raise ObservationError(
            "observations source must be a pandas DataFrame, a CSV path, an xarray Dataset "
            f"or a list of Datasets, got {type(source).__name__}"
        )
    return _from_table(source, time or "time", coords, variables, errors, drop_nan_positions, attrs)


def _coord_mapping(coords: object) -> dict[str, str]:
    if isinstance(coords, Mapping):
        mapping = {str(k): str(v) for k, v in coords.items()}
    elif isinstance(coords, Sequence) and not isinstance(coords, str):
        mapping = {str(c): str(c) for c in coords}
    else:
        mapping = {}
    if not mapping:
        raise ObservationError(
            f"coords must name the positions, e.g. {{'lat': 'latitude', 'lon': 'longitude'}} "
            f"or ['lat', 'lon'], got {coords!r}"
        )
    return mapping


def _is_dataset_list(source: object) -> bool:
    return (
        isinstance(source, Sequence)
        and not isinstance(source, str)
        and len(source) > 0
        and all(isinstance(s, xr.Dataset) for s in source)
    )


def _from_table(table, time, coords, variables, errors, drop_nan, attrs) -> xr.Dataset:
    """The observation Dataset of a DataFrame (see :func:`observations`)."""
    if any(name is not None for name in table.index.names):
        table = table.reset_index()
    table = table.rename(columns=str)
    for what, column in [("time", time), *((f"position {k!r}", v) for k, v in coords.items())]:
        if column not in table.columns:
            raise ObservationError(
                f"{what} column {column!r} not in the table; columns are {list(table.columns)}"
            )
    names = _observed_columns(table, time, coords, variables)
    errors = _checked_errors(errors, names, table.columns)
    t = _parse_times(table[time], time)
    pos = {
        k: real_array(f"position column {v!r}", table[v].to_numpy(), ObservationError)
        for k, v in coords.items()
    }
    missing = pd.isna(t) | np.any([np.isnan(p) for p in pos.values()], axis=0)
    keep = _kept_rows(missing, drop_nan, time, coords)
    used = {time, *coords.values(), *names, *(v + STD_SUFFIX for v in names)}
    aside = [c for c in table.columns if c not in used]
    _check_names(["time", *coords], [*names, *aside], time, coords)
    ds = xr.Dataset(
        {v: (OBS_DIM, _values(table, v)[keep], attrs.get(v, {})) for v in names},
        coords={
            "time": (OBS_DIM, t[keep], {"standard_name": "time"}),
            **{k: (OBS_DIM, p[keep], attrs.get(coords[k], {})) for k, p in pos.items()},
            **{c: (OBS_DIM, table[c].to_numpy()[keep], attrs.get(c, {})) for c in aside},
        },
    )
    for v in names:
        if v + STD_SUFFIX in table.columns:
            ds[v + STD_SUFFIX] = (OBS_DIM, _values(table, v + STD_SUFFIX)[keep])
        elif v in errors:
            ds[v + STD_SUFFIX] = ((), errors[v])
    if aside:
        ds.attrs["not_observed"] = ", ".join(aside)
    if drop_nan:
        ds.attrs["n_dropped_nan_positions"] = int(missing.sum())
    return ds


def _check_names(output: list[str], kept: list[str], time: str, coords) -> None:
    """Raise if a kept column would take the name of the time or a position coordinate."""
    sources = {"time": time, **coords}
    for name in kept:
        if name in output:
            raise ObservationError(
                f"column {name!r} would replace the observation coordinate {name!r}, which "
                f"comes from column {sources[name]!r}: rename or drop column {name!r}"
            )


def _observed_columns(table: pd.DataFrame, time: str, coords, variables) -> list[str]:
    if variables is None:
        skip = {time, *coords.values()}
        variables = [c for c in table.columns if c not in skip and not c.endswith(STD_SUFFIX)]
    elif isinstance(variables, str) or not isinstance(variables, Sequence):
        raise ObservationError(f"variables must be a list of column names, got {variables!r}")
    if not variables:
        raise ObservationError(
            f"no observed variable: variables names none, got columns {list(table.columns)}"
        )
    for v in variables:
        if v not in table.columns:
            raise ObservationError(
                f"observed variable {v!r} not in the table; columns are {list(table.columns)}"
            )
    return [str(v) for v in variables]


def _checked_errors(errors: object, names: list[str], columns) -> dict[str, float]:
    if errors is None:
        return {}
    if not isinstance(errors, Mapping):
        raise ObservationError(f"errors must be a mapping {{variable: std}}, got {errors!r}")
    for v, std in errors.items():
        if v not in names:
            raise ObservationError(f"errors names {v!r}, not an observed variable of {names}")
        if not is_positive(std):
            raise ObservationError(
                f"errors[{v!r}] must be a finite number > 0 (an error standard deviation), "
                f"got {std!r}"
            )
        if v + STD_SUFFIX in columns:
            raise ObservationError(
                f"errors[{v!r}]={std!r} while the table holds {v + STD_SUFFIX!r}: give the "
                "error of each variable once"
            )
    return {str(v): float(std) for v, std in errors.items()}


def _values(table: pd.DataFrame, column: str) -> np.ndarray:
    return real_array(f"column {column!r}", table[column].to_numpy(), ObservationError)


def _parse_times(column: pd.Series, name: str) -> np.ndarray:
    """Times as datetime64[ns] (naive UTC where they had a zone), or numbers as given."""
    if pd.api.types.is_bool_dtype(column.dtype):
        raise ObservationError(f"time column {name!r} must hold times, got booleans")
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy()
    try:
        parsed = pd.to_datetime(column)
    except (ValueError, TypeError) as err:
        if "utc=True" not in str(err):
            raise ObservationError(
                f"time column {name!r} must hold times pandas can parse, e.g. "
                f"'2026-01-01T00:00', got {_unparsed(column)!r} ({err})"
            ) from None
        parsed = pd.to_datetime(column, utc=True)  # mixed UTC offsets
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.to_numpy().astype("datetime64[ns]")


def _unparsed(column: pd.Series) -> object:
    """The first value of ``column`` pandas cannot parse as a time."""
    for value in column:
        try:
            pd.to_datetime(value)
        except (ValueError, TypeError):
            return value
    return column.iloc[0]


def _kept_rows(missing: np.ndarray, drop: bool, time: str, coords) -> np.ndarray:
    if missing.all():
        raise ObservationError(
            f"none of the {len(missing)} observation(s) has a time and a position (NaN or NaT "
            f"in {[time, *coords.values()]} in every row): expected some placed observations"
        )
    if missing.any() and not drop:
        raise ObservationError(
            f"{int(missing.sum())} of {len(missing)} observation(s) have no time or position "
            f"(NaN or NaT in {[time, *coords.values()]}), e.g. row {int(np.argmax(missing))}: "
            "expected every observation placed; pass drop_nan_positions=True to drop them "
            "(their count is kept in the attribute n_dropped_nan_positions)"
        )
    return np.flatnonzero(~missing)


def _stations_table(source, time: str | None, coords: Mapping[str, str]):
    """A station Dataset or list of them as one table, its time column, the attributes of
    its variables and its data variables but ``<var>_std``, time and positions (the observed
    ones by default)."""
    stations = [source] if isinstance(source, xr.Dataset) else list(source)
    time = time or find_time(stations[0])
    frames = [_station_frame(ds, time, coords) for ds in stations]
    if not isinstance(source, xr.Dataset):
        for i, frame in enumerate(frames):
            if "station" not in frame.columns:
                frame["station"] = i
    attrs = {str(k): dict(v.attrs) for k, v in stations[0].variables.items()}
    skip = {time, *coords.values()}
    data_vars = [
        str(v) for v in stations[0].data_vars if not str(v).endswith(STD_SUFFIX) and v not in skip
    ]
    return pd.concat(frames, ignore_index=True), time, attrs, data_vars


def _station_frame(ds: xr.Dataset, time: str, coords: Mapping[str, str]) -> pd.DataFrame:
    """Every variable and coordinate of ``ds`` broadcast to its data's dims, one column each."""
    if time not in ds.coords:
        raise ObservationError(
            f"time coordinate {time!r} not in the station; coordinates are "
            f"{sorted(map(str, ds.coords))}"
        )
    data = [v for v in ds.data_vars if ds[v].ndim > 0] or [time]
    dims = tuple(dict.fromkeys(d for v in data for d in ds[v].dims))
    for name in [time, *coords.values()]:
        if name in ds.variables and not set(ds[name].dims) <= set(dims):
            raise ObservationError(
                f"station coordinate {name!r} has dims {ds[name].dims}, expected some of the "
                f"data's dims {dims} (scalar for one station)"
            )
    template = ds[data].reset_coords(drop=True)
    columns = {}
    for name, var in ds.variables.items():
        if set(var.dims) <= set(dims):
            full = xr.DataArray(var).broadcast_like(template).transpose(*dims)
            columns[str(name)] = full.values.reshape(-1)
    return pd.DataFrame(columns)
