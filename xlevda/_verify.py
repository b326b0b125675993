"""Scaffolding and NumPy kernels of :mod:`xlevda.metrics`.

:func:`evaluate` checks and aligns an ensemble and its truth and applies a metric to each
variable; the kernels compute CRPS and rank histograms on NumPy blocks; the parameter helpers
read the truth and prior ranges of :func:`xlevda.metrics.parameter_rmse`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import dask.array as da
import numpy as np
import xarray as xr

from xlevda.errors import ConfigError, CoordinateError, ShapeError, VariableError

__all__ = [
    "Data",
    "Dims",
    "Metric",
    "crps_kernel",
    "evaluate",
    "float_dtype",
    "member_count",
    "norm",
    "range_widths",
    "rank_counts",
    "ratio",
    "select_parameters",
    "uniform_like",
    "width_of",
]

Data = TypeVar("Data", xr.Dataset, xr.DataArray)
"""An ensemble or truth: a Dataset (one result per variable) or a DataArray."""

Dims = str | Sequence[str] | None
"""The ``dim`` argument of the metrics: dimensions reduced, None for the default."""

Metric = Callable[[xr.DataArray, xr.DataArray, tuple[Hashable, ...]], xr.DataArray]
"""A metric of one variable: ``(ens, truth, dims) -> result``, after alignment."""


# -- evaluation scaffolding ----------------------------------------------------------------------


def evaluate(
    metric: Metric,
    ens: Data,
    truth: Data,
    *,
    member_dim: str,
    dim: Dims,
    attrs: dict[str, str | None],
    needs_members: bool = True,
    truth_may_broadcast: bool = False,
) -> Data:
    """Check, align and apply ``metric`` to each variable; ``units: None`` keeps the input's."""
    dims = _parse_dim(dim)

    def one(x: xr.DataArray, y: xr.DataArray, label: str) -> xr.DataArray:
        if needs_members and member_dim not in x.dims:
            raise CoordinateError(
                f"{label} has no member dimension {member_dim!r} (dimensions: {x.dims}); "
                "pass member_dim= to name it"
            )
        x, y = _align(x, y, member_dim, label, truth_may_broadcast)
        result = metric(x, y, _resolve_dims(x, dims, member_dim, label)).copy(deep=False)
        described = attrs | {"units": attrs["units"] or x.attrs.get("units")}
        result.attrs = {key: value for key, value in described.items() if value is not None}
        return result

    if isinstance(ens, xr.Dataset):
        if not isinstance(truth, xr.Dataset):
            raise VariableError(
                f"ens is a Dataset but truth is a {type(truth).__name__}; pass truth as a "
                f"Dataset with the variables {sorted(map(str, ens.data_vars))}"
            )
        _require_variables(ens, truth.data_vars, "ens", "; truth's variables are the ones verified")
        return xr.Dataset(
            {name: one(ens[name], truth[name], f"variable {name!r}") for name in truth.data_vars}
        )
    if not isinstance(ens, xr.DataArray) or not isinstance(truth, xr.DataArray):
        raise VariableError(
            "ens and truth must both be xarray Datasets or both DataArrays, got "
            f"{type(ens).__name__} and {type(truth).__name__}"
        )
    return one(ens, truth, "the DataArray" if ens.name is None else f"DataArray {ens.name!r}")


def _require_variables(data: xr.Dataset, names, role: str, hint: str = "") -> None:
    missing = [str(n) for n in names if n not in data.data_vars]
    if missing:
        have = sorted(map(str, data.data_vars))
        raise VariableError(f"variables {missing} are missing from {role} (it has {have}){hint}")


def _parse_dim(dim: Dims) -> tuple[str, ...] | None:
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, str) else dim
    if not isinstance(dims, Sequence) or not all(isinstance(d, str) for d in dims):
        raise ConfigError(f"dim must be None, a str or a sequence of str, got {dim!r}")
    if len(set(dims)) != len(dims):
        raise ConfigError(f"dim names a dimension more than once: {dim!r}")
    return tuple(dims)


def _resolve_dims(
    x: xr.DataArray, dims: tuple[str, ...] | None, member_dim: str, label: str
) -> tuple[Hashable, ...]:
    if dims is None:
        return tuple(d for d in x.dims if d not in (member_dim, "time"))
    if member_dim in dims:
        raise ConfigError(f"dim must not include the member dimension {member_dim!r}")
    unknown = [d for d in dims if d not in x.dims]
    if unknown:
        raise ConfigError(f"dim {unknown} not among the dimensions {x.dims} of {label}")
    return dims


def _align(
    x: xr.DataArray, y: xr.DataArray, member_dim: str, label: str, truth_may_broadcast: bool
) -> tuple[xr.DataArray, xr.DataArray]:
    expected, got = set(x.dims) - {member_dim}, set(y.dims)
    if not (got <= expected if truth_may_broadcast else got == expected):
        raise ShapeError(
            f"truth of {label} has dimensions {y.dims} but the ensemble has {x.dims}: truth needs "
            f"the ensemble's dimensions without the member dimension {member_dim!r}"
        )
    try:
        return xr.align(x, y, join="exact")
    except ValueError as err:
        raise CoordinateError(
            f"ensemble and truth of {label} do not align (nothing is reindexed): {err}. "
            "Select matching labels first, e.g. truth.sel(time=ens.time)"
        ) from err


def member_count(x: xr.DataArray, member_dim: str, minimum: int, what: str) -> int:
    """Members ``K`` of ``x`` along ``member_dim``; ConfigError when fewer than ``minimum``."""
    k = x.sizes[member_dim]
    if k < minimum:
        raise ConfigError(
            f"{what} needs K >= {minimum} members along {member_dim!r}, got K={k}"
            + ("; use fair=False for K=1" if what == "the fair CRPS" else "")
        )
    return k


# -- numerics ------------------------------------------------------------------------------------


def float_dtype(*arrays: xr.DataArray) -> np.dtype:
    """The floating dtype of a result computed from ``arrays`` (at least float32)."""
    return np.result_type(*(a.dtype for a in arrays), np.float32)


def norm(x: xr.DataArray, dims: tuple[Hashable, ...]) -> xr.DataArray:
    """Euclidean norm over ``dims``; NaN propagates."""
    return np.sqrt((x * x).sum(list(dims), skipna=False))


def ratio(num: xr.DataArray, den: xr.DataArray) -> xr.DataArray:
    """``num / den`` giving inf/nan at ``den == 0`` without a warning, lazily for dask."""
    return xr.apply_ufunc(
        _divide_quietly, num, den, dask="parallelized", output_dtypes=[float_dtype(num, den)]
    )


def _divide_quietly(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)


def crps_kernel(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """CRPS per point of members ``x (..., K)`` against ``y (...)``, via sorted members."""
    dtype = np.result_type(x, y, np.float32)
    x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
    k = x.shape[-1]
    skill = np.abs(x - y[..., None]).mean(axis=-1)
    weights = np.arange(1 - k, k, 2, dtype=dtype)  # 2i - K - 1 for i = 1..K
    half_pair_sum = np.sort(x, axis=-1) @ weights  # (1/2) sum_ij |x_i - x_j|
    return skill - half_pair_sum / (k * (k - 1) if fair else k * k)


def uniform_like(y: xr.DataArray, rng: np.random.Generator) -> xr.DataArray:
    """Uniform ``[0, 1)`` draws with the shape, coordinates and chunks of ``y``."""
    if y.chunks is None:
        return y.copy(data=rng.random(y.shape))
    return y.copy(data=da.random.default_rng(rng).random(y.shape, chunks=y.data.chunks))


def rank_counts(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, n_ranks: int, n_core: int
) -> np.ndarray:
    """Histogram of ranks of ``y (..., *core)`` among ``x (..., *core, K)``; ``u`` breaks ties."""
    below = (x < y[..., None]).sum(axis=-1)
    ties = (x == y[..., None]).sum(axis=-1)
    rank = below + np.floor(u * (ties + 1)).astype(below.dtype)
    valid = np.isfinite(y) & np.isfinite(x).all(axis=-1)
    loop_shape = y.shape[: y.ndim - n_core]
    rows, points = math.prod(loop_shape), math.prod(y.shape[y.ndim - n_core :])
    offset = n_ranks * np.arange(rows).reshape(rows, 1)
    flat = (rank.reshape(rows, points) + offset)[valid.reshape(rows, points)]
    return np.bincount(flat, minlength=rows * n_ranks).reshape(*loop_shape, n_ranks)


# -- parameters ----------------------------------------------------------------------------------


def select_parameters(estimates, truth_params) -> tuple[xr.Dataset, xr.Dataset]:
    """The estimates of the parameters ``truth_params`` names, and the truth as xarray."""
    if isinstance(estimates, xr.Dataset):
        if not isinstance(truth_params, xr.Dataset | Mapping):
            raise VariableError(
                "estimates is a Dataset, so truth_params must be a Dataset or a mapping of "
                f"parameter name to value, got {type(truth_params).__name__}"
            )
        truth = xr.Dataset(dict(truth_params.items()))
        _require_variables(estimates, truth.data_vars, "estimates")
        return estimates[list(truth.data_vars)], truth
    if not isinstance(truth_params, xr.DataArray | numbers.Real):
        raise VariableError(
            "estimates is a DataArray, so truth_params must be a DataArray or a number, "
            f"got {type(truth_params).__name__}"
        )
    return estimates, xr.DataArray(truth_params)


def range_widths(
    prior_range: Mapping[str, tuple[float, float]] | None,
) -> dict[str, float] | None:
    """Width ``high - low`` of each parameter's prior range (None without ranges)."""
    if prior_range is None:
        return None
    widths = {}
    for name, bounds in prior_range.items():
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            low = high = math.nan
        if not (math.isfinite(low) and math.isfinite(high) and high > low):
            raise ConfigError(
                f"prior_range of {name!r} must be (low, high), finite with high > low, "
                f"got {bounds!r}"
            )
        widths[name] = high - low
    return widths


def width_of(widths: dict[str, float], name: Hashable) -> float:
    """The prior-range width of parameter ``name``; VariableError when it has none."""
    if name not in widths:
        raise VariableError(
            f"prior_range has no entry for parameter {name!r} (it has {sorted(widths)})"
        )
    return widths[name]
