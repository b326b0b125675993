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

from collections.abc import Mapping

import numpy as np
import xarray as xr

from xlevda._verify import (
    Data,
    Dims,
    crps_kernel,
    evaluate,
    float_dtype,
    member_count,
    norm,
    range_widths,
    rank_counts,
    ratio,
    select_parameters,
    uniform_like,
    width_of,
)
from xlevda.errors import ConfigError

__all__ = [
    "crps",
    "member_relative_error",
    "parameter_rmse",
    "rank_histogram",
    "relative_rmse",
    "spread_error_ratio",
]


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
        return ratio(norm(xbar - y, dims), norm(y, dims))

    return evaluate(
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
        return ratio(norm(x - y, dims), norm(y, dims))

    return evaluate(
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
        k = member_count(x, member_dim, 2, "the spread-error ratio")
        xbar = x.mean(member_dim, skipna=False)
        spread2 = ((x - xbar) ** 2).sum([member_dim, *dims], skipna=False) / (k - ddof)
        return ratio(np.sqrt(spread2), norm(xbar - y, dims))

    return evaluate(
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
        member_count(x, member_dim, 2 if fair else 1, "the fair CRPS" if fair else "the CRPS")
        pointwise = xr.apply_ufunc(
            crps_kernel,
            x,
            y,
            input_core_dims=[[member_dim], []],
            kwargs={"fair": fair},
            dask="parallelized",
            output_dtypes=[float_dtype(x, y)],
            dask_gufunc_kwargs={"allow_rechunk": True},
        )
        return pointwise.mean(dims, skipna=False)

    return evaluate(
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
        n_ranks = member_count(x, member_dim, 1, "the rank histogram") + 1
        counts = xr.apply_ufunc(
            rank_counts,
            x,
            y,
            uniform_like(y, rng.spawn(1)[0]),
            input_core_dims=[[*dims, member_dim], list(dims), list(dims)],
            output_core_dims=[["rank"]],
            kwargs={"n_ranks": n_ranks, "n_core": len(dims)},
            dask="parallelized",
            output_dtypes=[np.int64],
            dask_gufunc_kwargs={"output_sizes": {"rank": n_ranks}, "allow_rechunk": True},
        )
        return counts.assign_coords(rank=np.arange(n_ranks))

    return evaluate(
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
    widths = range_widths(prior_range)
    estimates, truth = select_parameters(estimates, truth_params)

    def metric(x, y, dims):
        xbar = x.mean(member_dim, skipna=False) if member_dim in x.dims else x
        error = np.sqrt(((xbar - y) ** 2).mean(dims, skipna=False))
        return error if widths is None else error / width_of(widths, x.name)

    return evaluate(
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
