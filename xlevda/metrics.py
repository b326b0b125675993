"""Verification of ensembles against a known truth (LEVDA paper section 4.1 and appendix B).

Every function is xarray-native and lazy:

- ``ens`` is a Dataset or DataArray with a member dimension (``member_dim``, default
  ``"member"``); ``truth`` holds the same variables and dimensions without it.
- ``ens`` and ``truth`` are aligned with ``xr.align(join="exact")``: differing coordinate labels
  raise :class:`~xlevda.errors.CoordinateError` (nothing is reindexed); select matching labels
  first, e.g. ``truth.sel(time=ens.time)``.
- ``dim`` names the dimensions reduced to form a norm or an average; by default every dimension
  except ``member_dim`` and ``"time"`` (the spatial ones).  The other dimensions are kept.
- A Dataset gives a Dataset with one result per data variable, a DataArray gives a DataArray;
  every variable of ``ens`` must be in ``truth`` (verify a subset with ``ens[["u", "v"]]``).
- Dask-backed inputs give dask-backed results; nothing is computed until asked.
- NaN propagates (no ``skipna``): a NaN anywhere in a norm makes that norm NaN.  Fill masked
  points in both ``ens`` and ``truth`` first if they should not count.
- A truth norm of zero gives ``inf`` (or ``nan`` for ``0 / 0``), without an exception or warning.
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
    "crps",
    "member_relative_error",
    "parameter_rmse",
    "rank_histogram",
    "relative_rmse",
    "spread_error_ratio",
]

Data = TypeVar("Data", xr.Dataset, xr.DataArray)
Dims = str | Sequence[str] | None
_Metric = Callable[[xr.DataArray, xr.DataArray, tuple[Hashable, ...]], xr.DataArray]


def relative_rmse(
    ens_or_mean: Data, truth: Data, *, member_dim: str = "member", dim: Dims = None
) -> Data:
    """Relative RMSE of the ensemble mean, ``||xbar - x*||_2 / ||x*||_2`` over ``dim``.

    Parameters
    ----------
    ens_or_mean : Dataset or DataArray
        Ensemble (its mean over ``member_dim`` is verified) or, without ``member_dim``, a
        deterministic field such as a precomputed mean.
    truth : Dataset or DataArray
        True state: the dimensions of ``ens_or_mean`` without ``member_dim``.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions of the norm; default all but ``member_dim`` and ``"time"``.

    Returns
    -------
    Dataset or DataArray
        Dimensionless error over the remaining dimensions (e.g. ``time``); ``inf``/``nan``
        where the truth norm is zero.

    Examples
    --------
    >>> import xarray as xr
    >>> truth = xr.DataArray([3.0, 4.0], dims="x")
    >>> ens = xr.DataArray([[3.0, 4.0], [3.0, 6.0]], dims=("member", "x"))
    >>> float(relative_rmse(ens, truth))
    0.2
    >>> float(relative_rmse(ens.mean("member"), truth))
    0.2
    """

    def metric(x, y, dims):
        xbar = x.mean(member_dim, skipna=False) if member_dim in x.dims else x
        return _ratio(_norm(xbar - y, dims), _norm(y, dims))

    return _evaluate(
        metric,
        ens_or_mean,
        truth,
        member_dim=member_dim,
        dim=dim,
        needs_members=False,
        attrs={"long_name": "relative RMSE of the ensemble mean", "units": "1"},
    )


def member_relative_error(
    ens: Data, truth: Data, *, member_dim: str = "member", dim: Dims = None
) -> Data:
    """Relative error of each member, ``e^(i) = ||x^(i) - x*||_2 / ||x*||_2`` over ``dim``.

    Parameters
    ----------
    ens : Dataset or DataArray
        Ensemble with ``member_dim``.
    truth : Dataset or DataArray
        True state: the dimensions of ``ens`` without ``member_dim``.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions of the norm; default all but ``member_dim`` and ``"time"``.

    Returns
    -------
    Dataset or DataArray
        Dimensionless error per member (``member_dim`` is kept) over the remaining dimensions.

    Examples
    --------
    >>> import xarray as xr
    >>> truth = xr.DataArray([3.0, 4.0], dims="x")
    >>> ens = xr.DataArray([[3.0, 4.0], [3.0, 6.0]], dims=("member", "x"))
    >>> member_relative_error(ens, truth).values.tolist()
    [0.0, 0.4]
    """

    def metric(x, y, dims):
        return _ratio(_norm(x - y, dims), _norm(y, dims))

    return _evaluate(
        metric,
        ens,
        truth,
        member_dim=member_dim,
        dim=dim,
        attrs={"long_name": "relative error of each member", "units": "1"},
    )


def spread_error_ratio(
    ens: Data, truth: Data, *, member_dim: str = "member", dim: Dims = None, ddof: int = 0
) -> Data:
    """Spread-error ratio (paper eq. 20), ``sqrt(1/K sum_j ||x^(j) - xbar||^2) / ||xbar - x*||``.

    1 is ideal, below 1 over-confident (under-dispersed), above 1 under-confident.

    Parameters
    ----------
    ens : Dataset or DataArray
        Ensemble with ``member_dim`` holding ``K >= 2`` members.
    truth : Dataset or DataArray
        True state: the dimensions of ``ens`` without ``member_dim``.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions of the norms; default all but ``member_dim`` and ``"time"``.
    ddof : {0, 1}, default 0
        The spread divides by ``K - ddof``: 0 is the paper's ``1/K``, 1 the unbiased
        ``1/(K - 1)``.

    Returns
    -------
    Dataset or DataArray
        Dimensionless ratio over the remaining dimensions; ``inf`` where the mean is exact.

    Raises
    ------
    ConfigError
        If ``K < 2`` or ``ddof`` is not 0 or 1.

    Notes
    -----
    For an ensemble drawn from the same distribution as the truth, the expected squared error of
    the mean is ``(K + 1) / K`` times the variance, so the expected squared ratio is
    ``(K - 1) / (K + 1)`` with ``ddof=0`` and ``K / (K + 1)`` with ``ddof=1`` (0.98 and 0.99 at the
    paper's ``K = 100``).  Multiply by ``sqrt((K + 1) / K)`` with ``ddof=1`` for an unbiased
    calibration test at small ``K``.

    Examples
    --------
    >>> import xarray as xr
    >>> truth = xr.DataArray([3.0, 4.0], dims="x")
    >>> ens = xr.DataArray([[3.0, 4.0], [3.0, 6.0]], dims=("member", "x"))
    >>> float(spread_error_ratio(ens, truth))
    1.0
    >>> round(float(spread_error_ratio(ens, truth, ddof=1)), 4)
    1.4142
    """
    if ddof not in (0, 1):
        raise ConfigError(f"ddof must be 0 (1/K, the paper) or 1 (1/(K-1)), got {ddof!r}")

    def metric(x, y, dims):
        k = _member_count(x, member_dim, 2, "the spread-error ratio")
        xbar = x.mean(member_dim, skipna=False)
        spread2 = ((x - xbar) ** 2).sum([member_dim, *dims], skipna=False) / (k - ddof)
        return _ratio(np.sqrt(spread2), _norm(xbar - y, dims))

    return _evaluate(
        metric,
        ens,
        truth,
        member_dim=member_dim,
        dim=dim,
        attrs={"long_name": "spread-error ratio", "units": "1"},
    )


def crps(
    ens: Data, truth: Data, *, member_dim: str = "member", dim: Dims = None, fair: bool = True
) -> Data:
    """Continuous ranked probability score per point, averaged over ``dim``.

    The energy form ``CRPS = E|X - y| - 1/2 E|X - X'|`` for the ensemble's empirical
    distribution.  ``E|X - X'|`` comes from the sorted members,
    ``sum_ij |x_i - x_j| = 2 sum_i (2i - K - 1) x_(i)``, in ``O(K log K)`` time and ``O(K)``
    memory per point (no ``K x K`` array).

    Parameters
    ----------
    ens : Dataset or DataArray
        Ensemble with ``member_dim``; dask chunks along it are merged.
    truth : Dataset or DataArray
        True state: the dimensions of ``ens`` without ``member_dim``.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions averaged over; default all but ``member_dim`` and ``"time"``.
    fair : bool, default True
        Divide the pair sum by ``K (K - 1)`` (the fair CRPS, an unbiased estimate of the CRPS of
        the distribution the members are drawn from; needs ``K >= 2``) instead of ``K^2`` (the
        CRPS of the empirical distribution; with ``K = 1`` the absolute error).

    Returns
    -------
    Dataset or DataArray
        Score in the units of each variable over the remaining dimensions; lower is better.
        Average the variables of a Dataset (e.g. ``result.to_dataarray().mean("variable")``)
        for the paper's score over channels.

    Raises
    ------
    ConfigError
        If ``fair`` and ``K < 2``.

    Examples
    --------
    >>> import xarray as xr
    >>> ens = xr.DataArray([0.0, 2.0], dims="member")
    >>> truth = xr.DataArray(1.0)
    >>> float(crps(ens, truth))
    0.0
    >>> float(crps(ens, truth, fair=False))
    0.5
    """

    def metric(x, y, dims):
        _member_count(x, member_dim, 2 if fair else 1, "the fair CRPS" if fair else "the CRPS")
        pointwise = xr.apply_ufunc(
            _crps_kernel,
            x,
            y,
            input_core_dims=[[member_dim], []],
            kwargs={"fair": fair},
            dask="parallelized",
            output_dtypes=[_float_dtype(x, y)],
            dask_gufunc_kwargs={"allow_rechunk": True},
        )
        return pointwise.mean(dims, skipna=False)

    return _evaluate(
        metric,
        ens,
        truth,
        member_dim=member_dim,
        dim=dim,
        attrs={"long_name": "fair CRPS" if fair else "CRPS", "units": None},
    )


def rank_histogram(
    ens: Data, truth: Data, *, member_dim: str = "member", dim: Dims = None, seed: int = 0
) -> Data:
    """Counts of the truth's rank among the members (Talagrand diagram), over ``dim``.

    The rank at a point is the number of members below the truth, ``0 .. K``; ties between the
    truth and members are broken uniformly at random.  A calibrated ensemble gives a flat
    histogram, an under-dispersed one a U shape.

    Parameters
    ----------
    ens : Dataset or DataArray
        Ensemble with ``member_dim``; dask chunks along it and along ``dim`` are merged.
    truth : Dataset or DataArray
        True state: the dimensions of ``ens`` without ``member_dim``.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions counted over; default all but ``member_dim`` and ``"time"``.
    seed : int, default 0
        Seed of the tie-breaking draws (numpy and dask inputs draw differently; dask draws
        depend on the chunks).

    Returns
    -------
    Dataset or DataArray
        Integer counts with a new last dimension ``rank`` (coordinate ``0 .. K``).  Points where
        the truth or any member is NaN are not counted: ``result.sum("rank")`` is the number of
        points counted.

    Examples
    --------
    >>> import xarray as xr
    >>> ens = xr.DataArray([[1.0, 5.0], [2.0, 6.0]], dims=("member", "x"))
    >>> truth = xr.DataArray([0.0, 7.0], dims="x")
    >>> rank_histogram(ens, truth).values.tolist()
    [1, 0, 1]
    """
    rng = np.random.default_rng(seed)

    def metric(x, y, dims):
        n_ranks = _member_count(x, member_dim, 1, "the rank histogram") + 1
        counts = xr.apply_ufunc(
            _rank_counts,
            x,
            y,
            _uniform_like(y, rng.spawn(1)[0]),
            input_core_dims=[[*dims, member_dim], list(dims), list(dims)],
            output_core_dims=[["rank"]],
            kwargs={"n_ranks": n_ranks, "n_core": len(dims)},
            dask="parallelized",
            output_dtypes=[np.int64],
            dask_gufunc_kwargs={"output_sizes": {"rank": n_ranks}, "allow_rechunk": True},
        )
        return counts.assign_coords(rank=np.arange(n_ranks))

    return _evaluate(
        metric,
        ens,
        truth,
        member_dim=member_dim,
        dim=dim,
        attrs={"long_name": "rank histogram of the truth among the members", "units": "1"},
    )


def parameter_rmse(
    estimates: Data,
    truth_params: xr.Dataset | Mapping[str, float | xr.DataArray] | xr.DataArray | float,
    *,
    member_dim: str = "member",
    dim: Dims = None,
    prior_range: Mapping[str, tuple[float, float]] | None = None,
) -> Data:
    """RMSE of the ensemble-mean parameter estimates, per parameter.

    Parameters
    ----------
    estimates : Dataset or DataArray
        Parameter estimates, e.g. variables over ``(member, time)``; their mean over
        ``member_dim`` is verified (without ``member_dim`` they are used as they are).  Variables
        of a Dataset that ``truth_params`` does not name (e.g. the analysed fields) are ignored.
    truth_params : Dataset, mapping, DataArray or float
        True values by parameter name (a Dataset or ``{name: value}``) for Dataset estimates; a
        DataArray or number for DataArray estimates.  Scalars broadcast over time.
    member_dim : str, default "member"
        Ensemble dimension.
    dim : str or sequence of str, optional
        Dimensions the squared error is averaged over (e.g. a ``case`` dimension); default all
        but ``member_dim`` and ``"time"``, so by default the absolute error per time.
    prior_range : mapping of str to (float, float), optional
        ``(low, high)`` per parameter (e.g. ``dict(zip(schema.params, schema.param_range))``);
        the error is then a fraction of ``high - low``.  A DataArray is looked up by its name.

    Returns
    -------
    Dataset or DataArray
        Error per parameter over the remaining dimensions, in the parameter's units or, with
        ``prior_range``, dimensionless.

    Raises
    ------
    VariableError
        If a named parameter is missing from ``estimates`` or from ``prior_range``.
    ConfigError
        If a prior range is not finite with ``high > low``.

    Examples
    --------
    >>> import xarray as xr
    >>> est = xr.Dataset({"a": (("member", "time"), [[1.0, 2.5], [3.0, 3.5]])})
    >>> parameter_rmse(est, {"a": 3.0})["a"].values.tolist()
    [1.0, 0.0]
    >>> parameter_rmse(est, {"a": 3.0}, prior_range={"a": (0.0, 4.0)})["a"].values.tolist()
    [0.25, 0.0]
    """
    widths = _range_widths(prior_range)
    estimates, truth = _select_parameters(estimates, truth_params)

    def metric(x, y, dims):
        xbar = x.mean(member_dim, skipna=False) if member_dim in x.dims else x
        error = np.sqrt(((xbar - y) ** 2).mean(dims, skipna=False))
        return error if widths is None else error / _width_of(widths, x.name)

    return _evaluate(
        metric,
        estimates,
        truth,
        member_dim=member_dim,
        dim=dim,
        needs_members=False,
        truth_may_broadcast=True,
        attrs={
            "long_name": "RMSE of the ensemble-mean parameter estimate"
            + ("" if widths is None else " as a fraction of the prior range"),
            "units": None if widths is None else "1",
        },
    )


# -- evaluation scaffolding ----------------------------------------------------------------------


def _evaluate(
    metric: _Metric,
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


def _member_count(x: xr.DataArray, member_dim: str, minimum: int, what: str) -> int:
    k = x.sizes[member_dim]
    if k < minimum:
        raise ConfigError(
            f"{what} needs K >= {minimum} members along {member_dim!r}, got K={k}"
            + ("; use fair=False for K=1" if what == "the fair CRPS" else "")
        )
    return k


# -- numerics ------------------------------------------------------------------------------------


def _float_dtype(*arrays: xr.DataArray) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays), np.float32)


def _norm(x: xr.DataArray, dims: tuple[Hashable, ...]) -> xr.DataArray:
    return np.sqrt((x * x).sum(list(dims), skipna=False))


def _ratio(num: xr.DataArray, den: xr.DataArray) -> xr.DataArray:
    """``num / den`` giving inf/nan at ``den == 0`` without a warning, lazily for dask."""
    return xr.apply_ufunc(
        _divide_quietly, num, den, dask="parallelized", output_dtypes=[_float_dtype(num, den)]
    )


def _divide_quietly(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(num, den)


def _crps_kernel(x: np.ndarray, y: np.ndarray, fair: bool) -> np.ndarray:
    """CRPS per point of members ``x (..., K)`` against ``y (...)``, via sorted members."""
    dtype = np.result_type(x, y, np.float32)
    x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
    k = x.shape[-1]
    skill = np.abs(x - y[..., None]).mean(axis=-1)
    weights = np.arange(1 - k, k, 2, dtype=dtype)  # 2i - K - 1 for i = 1..K
    half_pair_sum = np.sort(x, axis=-1) @ weights  # (1/2) sum_ij |x_i - x_j|
    return skill - half_pair_sum / (k * (k - 1) if fair else k * k)


def _uniform_like(y: xr.DataArray, rng: np.random.Generator) -> xr.DataArray:
    """Uniform ``[0, 1)`` draws with the shape, coordinates and chunks of ``y``."""
    if y.chunks is None:
        return y.copy(data=rng.random(y.shape))
    return y.copy(data=da.random.default_rng(rng).random(y.shape, chunks=y.data.chunks))


def _rank_counts(
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


def _select_parameters(estimates, truth_params) -> tuple[xr.Dataset, xr.Dataset]:
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


def _range_widths(
    prior_range: Mapping[str, tuple[float, float]] | None,
) -> dict[str, float] | None:
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


def _width_of(widths: dict[str, float], name: Hashable) -> float:
    if name not in widths:
        raise VariableError(
            f"prior_range has no entry for parameter {name!r} (it has {sorted(widths)})"
        )
    return widths[name]
