"""Checks of a training archive for :meth:`xlevda.LDNet.fit`, before anything is computed.

:func:`check_archive` refuses what cannot be trained on with an
:class:`~xlevda.errors.XlevdaError` that names the variable, coordinate or argument,
the value received and what is expected, so that nothing is silently left out of the
model or converted: a data variable that is not over ``(run, time, *space)`` (unless
``variables=`` selects the fields), values that are not real numbers, non-finite or too
large to standardize, times that are not datetime64 or real numbers, strictly increasing,
spatial coordinates that repeat, fewer than two runs, parameters that do not vary.
It also finds the missing values (NaN) that ``missing="mask"`` lets through: see
:class:`MissingValues`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, fields, replace

import numpy as np
import xarray as xr

from xlevda._convert import check_params, coord_points, find_time, spatial_layout
from xlevda.errors import ConfigError, CoordinateError, ShapeError, VariableError
from xlevda.surrogates.config import LDNetConfig
from xlevda.validate import check_choice, check_int

__all__ = [
    "MISSING_POLICIES",
    "Archive",
    "MissingValues",
    "check_archive",
    "n_validation",
    "unused_training_options",
    "with_table_size",
]

MISSING_POLICIES = ("error", "mask")
"""Values of ``LDNet.fit(missing=...)``: NaN is an error, or a missing value left out."""


@dataclass(frozen=True)
class MissingValues:
    """The missing values (NaN) of an archive fitted with ``missing="mask"``.

    A spatial point that is NaN in every run, frame and variable is *land*: it is left
    out of the training points altogether.  Every other NaN is a *gap*: that value (run,
    frame, point, variable) is left out of the loss and of the errors.

    Attributes
    ----------
    keep : ndarray of bool, shape (n_points,)
        The points trained on (not land), in the archive's spatial order (C order over
        the spatial dimensions).
    land_fraction : float
        Fraction of the archive's points that are land.
    gap_fraction : float
        Fraction of the values on the kept points that are NaN.
    """

    keep: np.ndarray
    land_fraction: float
    gap_fraction: float


@dataclass(frozen=True)
class Archive:
    """What :func:`check_archive` found: the names to use and the missing values."""

    params: list[str]
    variables: list[str]
    missing: MissingValues | None


def _names(name: str, value: object, *, allow_none: bool) -> list[str] | None:
    """``value`` as a list of distinct names (a sequence of strings, not one string)."""
    if value is None and allow_none:
        return None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a list of names, got {value!r}")
    names = list(value)
    if not names:
        raise ConfigError(f"{name} is empty: name at least one")
    if any(not isinstance(n, str) for n in names):
        raise ConfigError(f"{name} must hold strings, got {names!r}")
    names = [str(n) for n in names]  # numpy strings as plain ones
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{name} must name each entry once, got {repeated} repeated")
    return names


def _is_real(values: np.ndarray) -> bool:
    return values.dtype.kind in "iuf"


def _where(da: xr.DataArray, bad: xr.DataArray) -> str:
    """The labels of the first ``True`` of ``bad`` (over ``da``'s dims), as text."""
    index = bad.argmax(dim=list(bad.dims)) if bad.ndim else {}
    parts = []
    for d in bad.dims:
        i = int(index[d])
        label = da[d].values[i] if d in da.coords else i
        parts.append(f"{d}={label}")
    return ", ".join(parts)


def check_archive(
    ds: object,
    params: object,
    variables: object,
    *,
    run_dim: object,
    missing: object,
    chunk_runs: object,
    memory_budget: object,
    coords: object = None,
) -> Archive:
    """Check the arguments of :meth:`xlevda.LDNet.fit`; see the module docstring.

    Returns
    -------
    Archive
        The parameter and variable names, and with ``missing="mask"`` the missing values.

    Raises
    ------
    XlevdaError
        A :class:`~xlevda.errors.ConfigError`, :class:`~xlevda.errors.CoordinateError`,
        :class:`~xlevda.errors.VariableError` or :class:`~xlevda.errors.ShapeError`
        naming what is wrong.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset(
    ...     {"h": (("run", "time", "y", "x"), np.ones((3, 2, 2, 4)))},
    ...     coords={"run": [0, 1, 2], "time": [0.0, 1.0], "y": [0.0, 1.0],
    ...             "x": np.arange(4.0), "a": ("run", [0.0, 1.0, 2.0])})
    >>> kw = dict(run_dim="run", missing="error", chunk_runs=16, memory_budget=0)
    >>> check_archive(ds, ["a"], None, **kw).variables
    ['h']
    >>> check_archive(ds.assign(depth=(("y", "x"), np.ones((2, 4)))), ["a"], None, **kw)
    Traceback (most recent call last):
    ...
    xlevda.errors.ShapeError: variable 'depth' has dimensions ('y', 'x'), expected ('run', \
'time', 'y', 'x'); every data variable is learned unless variables= names the fields: pass \
variables=[...] to leave it out
    """
    if not isinstance(ds, xr.Dataset):
        raise VariableError(
            f"dataset must be an xarray Dataset of runs, got {type(ds).__name__} (a DataArray "
            "named 'x' becomes one with x.to_dataset())"
        )
    names = _names("params", params, allow_none=False)
    assert names is not None
    chosen = _names("variables", variables, allow_none=True)
    space_names = _names("coords", coords, allow_none=True)
    check_choice("missing", missing, MISSING_POLICIES)
    check_int("chunk_runs", chunk_runs, 1)
    check_int("memory_budget", memory_budget, 0)
    if not isinstance(run_dim, str) or run_dim not in ds.dims:
        raise CoordinateError(
            f"run dimension {run_dim!r} not found; dimensions are {sorted(map(str, ds.dims))}"
        )
    time = _check_time(ds, run_dim)
    space = _check_space(ds, run_dim, time, names, space_names)
    dims = (run_dim, ds[time].dims[0], *space)
    if ds.sizes[run_dim] < 2:
        raise ConfigError(
            f"{run_dim!r} has {ds.sizes[run_dim]} run(s): need at least 2 runs, with "
            "parameters that differ, to learn how the fields depend on them"
        )
    check_params(ds, names, run_dim)
    for p in names:
        values = np.asarray(ds[p].values)
        if np.unique(values).size < 2:
            raise VariableError(
                f"parameter {p!r} takes the single value {values.flat[0]} on all {values.size} "
                "runs: a parameter must vary across runs (leave it out of params)"
            )
    fields = _check_variables(ds, names, chosen, dims)
    mask = _check_values(ds, fields, dims, missing == "mask")
    return Archive(names, fields, mask)


_OBJECT_HINT = (
    "convert cftime times with ds.convert_calendar('standard', use_cftime=False) (or "
    "ds.indexes['time'].to_datetimeindex()), and time-zone-aware or Period times to UTC "
    "datetime64"
)
_TIME_HINTS = {
    "m": "give times as datetime64, or as numbers with a units attribute",
    "U": "parse strings with pandas.to_datetime",
    "c": "give real numbers",
    "b": "give datetime64 values or numbers",
}


def _check_time(ds: xr.Dataset, run_dim: str) -> str:
    """The time coordinate's name, after checking its type and order."""
    time = find_time(ds)
    coord = ds[time]
    if coord.ndim != 1 or coord.dims[0] == run_dim:
        raise CoordinateError(
            f"time coordinate {time!r} must be 1-D over its own dimension, got dims {coord.dims}"
        )
    values = np.asarray(coord.values)
    if not (np.issubdtype(values.dtype, np.datetime64) or _is_real(values)):
        kind = type(values.flat[0]).__name__ if values.size else str(values.dtype)
        raise CoordinateError(
            f"time coordinate {time!r} must hold datetime64 values or real numbers, got "
            f"dtype {values.dtype} ({kind}); {_TIME_HINTS.get(values.dtype.kind, _OBJECT_HINT)}"
        )
    if values.size < 2:
        raise CoordinateError(
            f"time coordinate {time!r} must have at least 2 frames, got {values.size}"
        )
    is_dt = values.dtype.kind == "M"
    numbers = values.astype("datetime64[ns]").astype(np.int64) if is_dt else values
    bad = np.isnat(values) if is_dt else ~np.isfinite(values.astype(float))
    if bad.any():
        raise CoordinateError(
            f"time coordinate {time!r} holds {values[bad][0]} at position {int(np.argmax(bad))}: "
            "every frame needs a time"
        )
    steps = np.diff(numbers.astype(float))
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        what = "repeats" if steps[i] == 0 else "decreases"
        raise CoordinateError(
            f"time coordinate {time!r} must be strictly increasing, got {values[i]} then "
            f"{values[i + 1]} at positions {i} and {i + 1} (it {what}); sort with "
            "ds.sortby(time) and drop repeated frames"
        )
    return time


def _check_space(
    ds: xr.Dataset, run_dim: str, time: str, params: list[str], coords: list[str] | None
) -> tuple[Hashable, ...]:
    """The spatial dimensions, after checking their coordinates (``coords``, or detected
    among those that are not parameters): real, finite, distinct."""
    if coords is not None and (taken := sorted(set(coords) & set(params))):
        raise ConfigError(
            f"coords {coords} names the parameter(s) {taken}: a coordinate is either a "
            "parameter (on the run dimension) or spatial, not both"
        )
    layout = spatial_layout(ds, coords, exclude=params, exclude_dims=(run_dim, *ds[time].dims))
    if run_dim in layout.dims or ds[time].dims[0] in layout.dims:
        raise CoordinateError(
            f"spatial coordinates {layout.coords} lie on the run or time dimension "
            f"({run_dim!r}, {ds[time].dims[0]!r}): expected their own dimensions"
        )
    for d in layout.dims:
        if ds.sizes[d] == 0:
            raise ShapeError(f"spatial dimension {d!r} is empty: no points to train on")
    columns = []
    for c in layout.coords:
        values = np.asarray(ds[c].values)
        if not _is_real(values):
            raise CoordinateError(
                f"spatial coordinate {c!r} must hold real numbers, got dtype {values.dtype}"
            )
        if not np.isfinite(values.astype(float)).all():
            bad = values[~np.isfinite(values.astype(float))][0]
            raise CoordinateError(f"spatial coordinate {c!r} must be finite, got {bad}")
        columns.append(values.astype(float))
    if layout.gridded:
        for c, values in zip(layout.coords, columns, strict=True):
            _no_repeats(f"spatial coordinate {c!r}", values[:, None])
    else:
        _no_repeats(f"points {layout.coords}", coord_points(ds, layout))
    return layout.dims


def _no_repeats(what: str, rows: np.ndarray) -> None:
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    if (counts > 1).any():
        value = unique[int(np.argmax(counts > 1))]
        shown = float(value[0]) if value.size == 1 else tuple(float(v) for v in value)
        raise CoordinateError(
            f"{what} must not repeat, got {shown} {int(counts.max())} times: each location once"
        )


def _check_variables(
    ds: xr.Dataset, params: list[str], chosen: list[str] | None, dims: tuple[Hashable, ...]
) -> list[str]:
    """The fields to learn: ``chosen``, or every data variable that is not a parameter
    (each must then lie over ``dims``); real-valued."""
    names = chosen
    if names is None:
        names = [str(v) for v in ds.data_vars if v not in params]
        if not names:
            raise VariableError(
                f"the dataset has no data variable to learn besides the parameters {params}"
            )
    for v in names:
        if v not in ds.data_vars:
            raise VariableError(
                f"variable {v!r} not found; data variables are {sorted(map(str, ds.data_vars))}"
            )
        da = ds[v]
        if set(da.dims) != set(dims) or da.ndim != len(dims):
            hint = (
                "; every data variable is learned unless variables= names the fields: pass "
                "variables=[...] to leave it out"
                if chosen is None
                else ""
            )
            raise ShapeError(f"variable {v!r} has dimensions {da.dims}, expected {dims}{hint}")
        if not _is_real(np.empty(0, da.dtype)):
            raise VariableError(
                f"variable {v!r} must hold real numbers (int or float), got dtype {da.dtype}"
            )
    return list(names)


def _check_values(
    ds: xr.Dataset, names: list[str], dims: tuple[Hashable, ...], mask: bool
) -> MissingValues | None:
    """Refuse infinite values, values whose moments overflow, and NaN unless ``mask``
    (then: every variable and run needs a finite value); the missing values."""
    run_dim, space = dims[0], dims[2:]
    with np.errstate(all="ignore"):  # overflow and inf - inf: checked and reported below
        stats = _value_stats(ds, names, dims)
    for v, (n_nan, n_inf, std, mean, _, _) in zip(names, stats, strict=True):
        da = ds[v]
        if int(n_inf):
            raise VariableError(
                f"variable {v!r} holds {int(n_inf)} infinite value(s), e.g. at "
                f"{_where(da, np.isinf(da))}: training data must be finite (NaN marks a "
                "missing value, with missing='mask')"
            )
        if int(n_nan) and not mask:
            raise VariableError(
                f"variable {v!r} holds {int(n_nan)} NaN value(s), e.g. at "
                f"{_where(da, np.isnan(da))}: training data must be complete, or pass "
                "missing='mask' to leave missing values out of the loss (land: a point NaN "
                "in every run and frame; gaps: any other NaN)"
            )
        if int(n_nan) == da.size:
            raise VariableError(f"variable {v!r} is NaN everywhere: nothing to learn")
        if not (np.isfinite(float(std)) and np.isfinite(float(mean))):
            big = float(np.abs(da.astype(float)).max())
            raise VariableError(
                f"variable {v!r} holds values up to {big:.3g} in magnitude: its mean or "
                f"standard deviation overflows {da.dtype}; rescale it (e.g. change its units)"
                + (" or store it as float64" if da.dtype != np.float64 else "")
            )
    if not mask:
        return None
    empty_runs = np.logical_and.reduce([np.asarray(s[5]) for s in stats])
    if empty_runs.any():
        label = ds[run_dim].values[int(np.argmax(empty_runs))] if run_dim in ds.coords else 0
        raise VariableError(
            f"run {label} (along {run_dim!r}) is NaN in every variable, frame and point: "
            "nothing to learn from it; drop it"
        )
    land = np.logical_and.reduce([np.asarray(s[4].transpose(*space).values).ravel() for s in stats])
    per_point = ds[names[0]].size // land.size  # runs x frames
    n_kept = int((~land).sum()) * per_point * len(names)
    n_gaps = sum(int(s[0]) for s in stats) - int(land.sum()) * per_point * len(names)
    return MissingValues(keep=~land, land_fraction=float(land.mean()), gap_fraction=n_gaps / n_kept)


def _value_stats(ds: xr.Dataset, names: list[str], dims: tuple[Hashable, ...]) -> tuple:
    """Per variable, in one pass: NaN count, infinite count, std, mean, where NaN in
    every run and frame (over space) and where NaN in every frame and point (over runs)."""
    import dask

    run_dim, space = dims[0], dims[2:]
    return dask.compute(
        *[
            (
                np.isnan(ds[v]).sum(),
                np.isinf(ds[v]).sum(),
                ds[v].std(),  # as build_schema computes them: in the variable's dtype
                ds[v].mean(),
                np.isnan(ds[v]).all([d for d in dims if d not in space]),
                np.isnan(ds[v]).all([d for d in dims if d != run_dim]),
            )
            for v in names
        ]
    )


def with_table_size(config: LDNetConfig, n_train: int) -> LDNetConfig:
    """``config`` with ``initial_state.n_runs`` set to the number of training runs."""
    init = config.initial_state
    if init is None:
        return config
    if init.n_runs is not None and init.n_runs != n_train:
        raise ConfigError(
            f"LDNetConfig.initial_state.n_runs={init.n_runs} differs from the {n_train} "
            "training runs: leave it None (fit sets it)"
        )
    return replace(config, initial_state=replace(init, n_runs=n_train))


def unused_training_options(config: LDNetConfig) -> str:
    """A note naming the ``config.train`` options a closed-form fit does not use (all but
    ``validation_fraction`` and ``seed``) where they differ from ``TrainConfig()``'s; ``""``
    for a gradient-trained config or none changed.

    Examples
    --------
    >>> from xlevda.surrogates.config import TrainConfig
    >>> unused_training_options(LDNetConfig(train=TrainConfig(epochs=5, seed=3)))
    'unused by the closed-form fit (no gradient descent): TrainConfig epochs=5'
    """
    if config.dynamics is None:
        return ""
    default = replace(type(config.train)(), seed=config.train.seed)
    default = replace(default, validation_fraction=config.train.validation_fraction)
    changed = [
        f"{f.name}={getattr(config.train, f.name)!r}"
        for f in fields(config.train)
        if getattr(config.train, f.name) != getattr(default, f.name)
    ]
    if not changed:
        return ""
    return "unused by the closed-form fit (no gradient descent): TrainConfig " + ", ".join(changed)


def n_validation(config: LDNetConfig, n_runs: int, run_dim: str) -> int:
    """Runs held out: ``validation_fraction`` of them, at least one unless the fraction is 0
    (the closed-form linear fit always holds one out: it chooses its kernel width on it)."""
    frac = config.train.validation_fraction
    n_val = max(1, round(frac * n_runs)) if frac > 0 or config.dynamics is not None else 0
    if n_runs - n_val < 1:
        raise ConfigError(
            f"{run_dim!r} has {n_runs} run(s): need at least 2 to split into training and "
            f"validation (validation_fraction={frac})"
        )
    return n_val
