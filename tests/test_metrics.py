"""Tests of xlevda.metrics: exact values, properties, brute-force references, dask laziness."""

from __future__ import annotations

import doctest
import math
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xlevda import metrics
from xlevda.errors import ConfigError, CoordinateError, ShapeError, VariableError
from xlevda.metrics import (
    crps,
    member_relative_error,
    parameter_rmse,
    rank_histogram,
    relative_rmse,
    spread_error_ratio,
)

ENSEMBLE_METRICS = [relative_rmse, member_relative_error, spread_error_ratio, crps, rank_histogram]


def make_case(k: int = 5, n_time: int = 3, ny: int = 4, nx: int = 6, seed: int = 0):
    """Ensemble (member, time, y, x) and truth (time, y, x) Datasets with variables u and v."""
    rng = np.random.default_rng(seed)
    coords = {"time": np.arange(n_time), "y": np.arange(ny) * 10.0, "x": np.arange(nx) * 5.0}
    truth = xr.Dataset(
        {name: (("time", "y", "x"), rng.normal(size=(n_time, ny, nx))) for name in ("u", "v")},
        coords=coords,
    )
    noise = {name: rng.normal(scale=0.5, size=(k, n_time, ny, nx)) for name in ("u", "v")}
    ens = xr.Dataset(
        {
            name: truth[name] + xr.DataArray(noise[name], dims=("member", "time", "y", "x"))
            for name in ("u", "v")
        }
    ).assign_coords(member=np.arange(k))
    return ens.transpose("member", "time", "y", "x"), truth


def brute_force_crps(x: np.ndarray, y: np.ndarray, fair: bool) -> float:
    """Mean over points of the energy-form CRPS with the full K x K pair array."""
    k = x.shape[0]
    skill = np.abs(x - y).mean(axis=0)
    pairs = np.abs(x[:, None] - x[None, :]).sum(axis=(0, 1))
    return float((skill - pairs / (2 * (k * (k - 1) if fair else k * k))).mean())


def _raise_on_compute(dsk, keys, **kwargs):
    raise AssertionError("a metric computed a dask array")


# -- exact values ---------------------------------------------------------------------------------


def test_docstring_examples_run():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def test_two_member_values_by_hand():
    truth = xr.DataArray([[3.0, 4.0], [0.0, 2.0]], dims=("time", "x"))
    ens = xr.DataArray(
        [[[3.0, 4.0], [0.0, 1.0]], [[3.0, 6.0], [0.0, 5.0]]], dims=("member", "time", "x")
    )
    # time 0: mean (3, 5), error 1, |truth| 5, spread sqrt(2/2) = 1
    # time 1: mean (0, 3), error 1, |truth| 2, spread sqrt((4 + 4)/2) = 2
    np.testing.assert_allclose(relative_rmse(ens, truth), [0.2, 0.5])
    np.testing.assert_allclose(member_relative_error(ens, truth), [[0.0, 0.5], [0.4, 1.5]])
    np.testing.assert_allclose(spread_error_ratio(ens, truth), [1.0, 2.0])
    np.testing.assert_allclose(
        spread_error_ratio(ens, truth, ddof=1), np.sqrt(2) * np.array([1.0, 2.0])
    )
    # CRPS per point: E|X - y| - sum_ij |x_i - x_j| / (2 K (K - 1)); pairs count both orders
    np.testing.assert_allclose(crps(ens, truth), [(0 + (1 - 1)) / 2, (0 + (2 - 2)) / 2])
    np.testing.assert_allclose(crps(ens, truth, fair=False), [(0 + 0.5) / 2, (0 + 1.0) / 2])
    assert member_relative_error(ens, truth).dims == ("member", "time")


def test_relative_rmse_of_perfect_ensemble_is_zero():
    _, truth = make_case()
    perfect = xr.concat([truth] * 4, dim="member")
    result = relative_rmse(perfect, truth)
    for name in ("u", "v"):
        np.testing.assert_array_equal(result[name], 0.0)
        assert result[name].dims == ("time",)


def test_relative_rmse_of_deterministic_field():
    _, truth = make_case()
    np.testing.assert_allclose(relative_rmse(1.1 * truth, truth).to_dataarray(), 0.1)


def test_default_and_explicit_dims():
    ens, truth = make_case()
    assert crps(ens, truth)["u"].dims == ("time",)
    assert relative_rmse(ens, truth, dim="x")["u"].dims == ("time", "y")
    assert spread_error_ratio(ens, truth, dim=["time", "y", "x"])["u"].dims == ()
    np.testing.assert_allclose(
        crps(ens.u, truth.u, dim=("y", "x")), crps(ens.u, truth.u, dim=["x", "y"])
    )


@pytest.mark.parametrize("scale", [0.5, 2.0, 3.0])
def test_spread_error_ratio_scales_with_perturbations(scale):
    ens, truth = make_case()
    mean = ens.mean("member")
    scaled = mean + scale * (ens - mean)
    np.testing.assert_allclose(
        spread_error_ratio(scaled, truth).to_dataarray(),
        scale * spread_error_ratio(ens, truth).to_dataarray(),
    )


def test_crps_of_single_member_is_mean_absolute_error():
    ens, truth = make_case(k=1)
    expected = np.abs(ens.u.isel(member=0) - truth.u).mean(["y", "x"])
    np.testing.assert_allclose(crps(ens.u, truth.u, fair=False), expected)


@pytest.mark.parametrize("fair", [True, False])
def test_crps_of_degenerate_ensemble_at_truth_is_zero(fair):
    _, truth = make_case()
    ens = xr.concat([truth] * 3, dim="member")
    np.testing.assert_array_equal(crps(ens, truth, fair=fair).to_dataarray(), 0.0)


def test_crps_of_large_gaussian_ensemble_matches_closed_form():
    rng = np.random.default_rng(1)
    mu, sigma, y = 0.3, 2.0, 1.7
    ens = xr.DataArray(rng.normal(mu, sigma, size=20_000), dims="member")
    z = (y - mu) / sigma
    pdf, cdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(z / math.sqrt(2)))
    expected = sigma * (z * (2 * cdf - 1) + 2 * pdf - 1 / math.sqrt(math.pi))
    assert float(crps(ens, xr.DataArray(y))) == pytest.approx(expected, abs=0.03)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    k=st.integers(1, 8),
    n=st.integers(1, 6),
    fair=st.booleans(),
)
def test_crps_equals_brute_force(data, k, n, fair):
    k = max(k, 2) if fair else k
    values = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)
    x = data.draw(hnp.arrays(np.float64, (k, n), elements=values))
    y = data.draw(hnp.arrays(np.float64, (n,), elements=values))
    result = crps(xr.DataArray(x, dims=("member", "x")), xr.DataArray(y, dims="x"), fair=fair)
    assert float(result) == pytest.approx(brute_force_crps(x, y, fair), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("func", [relative_rmse, spread_error_ratio, crps, rank_histogram])
def test_invariant_to_member_order(func):
    ens, truth = make_case(k=6)
    shuffled = ens.isel(member=np.random.default_rng(3).permutation(6))
    xr.testing.assert_allclose(func(shuffled, truth), func(ens, truth))


def test_zero_truth_norm_gives_inf_and_nan_quietly():
    truth = xr.DataArray([[0.0, 0.0], [0.0, 0.0]], dims=("time", "x"))
    ens = xr.DataArray([[[1.0, 0.0], [0.0, 0.0]]] * 2, dims=("member", "time", "x"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rel = relative_rmse(ens, truth)
        ser = spread_error_ratio(ens, truth)
    assert rel.values.tolist()[0] == math.inf
    assert math.isnan(rel.values[1])
    assert math.isnan(ser.values[1])  # no spread, exact mean: 0 / 0


def test_nan_propagates():
    ens, truth = make_case()
    truth["u"][0, 0, 0] = np.nan
    result = relative_rmse(ens, truth)
    assert np.isnan(result.u[0]) and np.isfinite(result.u[1:]).all()
    assert np.isfinite(result.v).all()


def test_result_attributes():
    ens, truth = make_case()
    ens.u.attrs["units"] = "m s-1"
    assert crps(ens, truth).u.attrs == {"long_name": "fair CRPS", "units": "m s-1"}
    assert relative_rmse(ens, truth).u.attrs["units"] == "1"


# -- rank histogram -------------------------------------------------------------------------------


def test_rank_histogram_counts_every_point():
    ens, truth = make_case(k=4)
    counts = rank_histogram(ens, truth)
    assert counts.u.dims == ("time", "rank")
    assert counts.u["rank"].values.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(counts.u.sum("rank"), 4 * 6)


def test_rank_histogram_extremes_and_skipped_nan():
    ens = xr.DataArray([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], dims=("member", "x"))
    truth = xr.DataArray([0.0, 3.0, np.nan], dims="x")
    assert rank_histogram(ens, truth).values.tolist() == [1, 0, 1]


def test_rank_histogram_ties_are_random_and_seeded():
    truth = xr.DataArray(np.zeros(3000), dims="x")
    ens = xr.concat([truth] * 2, dim="member")
    counts = rank_histogram(ens, truth, seed=7)
    assert counts.values.sum() == 3000
    assert (np.abs(counts.values - 1000) < 150).all()
    xr.testing.assert_equal(counts, rank_histogram(ens, truth, seed=7))
    assert not counts.equals(rank_histogram(ens, truth, seed=8))


def test_rank_histogram_of_calibrated_ensemble_is_flat():
    rng = np.random.default_rng(2)
    ens = xr.DataArray(rng.normal(size=(9, 5000)), dims=("member", "x"))
    truth = xr.DataArray(rng.normal(size=5000), dims="x")
    counts = rank_histogram(ens, truth).values
    assert (np.abs(counts - 500) < 100).all()


# -- parameters -----------------------------------------------------------------------------------


def test_parameter_rmse_values_and_prior_range():
    est = xr.Dataset(
        {
            "a": (("member", "time"), [[1.0, 2.5], [3.0, 3.5]]),
            "b": (("member", "time"), [[0.0, 1.0], [0.0, 1.0]]),
            "eta": (("member", "time", "x"), np.zeros((2, 2, 3))),
        }
    )
    result = parameter_rmse(est, {"a": 3.0, "b": 0.5})
    assert set(result.data_vars) == {"a", "b"}
    np.testing.assert_allclose(result.a, [1.0, 0.0])
    np.testing.assert_allclose(result.b, [0.5, 0.5])
    scaled = parameter_rmse(est, {"a": 3.0, "b": 0.5}, prior_range={"a": (0, 4), "b": (0, 2)})
    np.testing.assert_allclose(scaled.a, [0.25, 0.0])
    np.testing.assert_allclose(scaled.b, [0.25, 0.25])
    np.testing.assert_allclose(parameter_rmse(est.a, 3.0), [1.0, 0.0])


def test_parameter_rmse_over_cases_and_varying_truth():
    est = xr.DataArray(
        [[[1.0, 2.0], [5.0, 6.0]]], dims=("member", "case", "time"), name="a"
    )  # one member, two cases
    truth = xr.DataArray([[1.0, 2.0], [2.0, 2.0]], dims=("case", "time"))
    np.testing.assert_allclose(parameter_rmse(est, truth), [np.sqrt(4.5), np.sqrt(8.0)])
    np.testing.assert_allclose(
        parameter_rmse(est, truth, prior_range={"a": (0.0, 2.0)}), [np.sqrt(4.5) / 2, np.sqrt(2)]
    )


# -- dask and Dataset / DataArray consistency ----------------------------------------------------


@pytest.mark.parametrize("func", ENSEMBLE_METRICS)
def test_dask_inputs_stay_lazy(func):
    ens, truth = make_case(k=4)
    lazy_ens = ens.chunk({"member": 2, "time": 1})
    lazy_truth = truth.chunk({"time": 1})
    with dask.config.set(scheduler=_raise_on_compute):
        result = func(lazy_ens, lazy_truth)
    assert result.u.chunks is not None
    xr.testing.assert_allclose(result.compute(), func(ens, truth))


def test_parameter_rmse_stays_lazy():
    est = xr.Dataset({"a": (("member", "time"), np.arange(6.0).reshape(3, 2))}).chunk()
    with dask.config.set(scheduler=_raise_on_compute):
        result = parameter_rmse(est, {"a": 1.0}, prior_range={"a": (0, 2)})
    assert result.a.chunks is not None
    np.testing.assert_allclose(result.a, [0.5, 1.0])


@pytest.mark.parametrize("func", ENSEMBLE_METRICS)
def test_dataset_matches_dataarray(func):
    ens, truth = make_case()
    from_dataset = func(ens, truth)
    assert isinstance(from_dataset, xr.Dataset)
    for name in ("u", "v"):
        from_array = func(ens[name], truth[name])
        assert isinstance(from_array, xr.DataArray)
        xr.testing.assert_allclose(from_dataset[name], from_array)


def test_custom_member_dim():
    ens, truth = make_case()
    renamed = ens.rename(member="realization")
    xr.testing.assert_allclose(crps(renamed, truth, member_dim="realization"), crps(ens, truth))


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", ENSEMBLE_METRICS)
def test_variable_missing_from_ensemble(func):
    ens, truth = make_case()
    with pytest.raises(VariableError, match=r"\['v'\] are missing from ens"):
        func(ens[["u"]], truth)


@pytest.mark.parametrize("func", ENSEMBLE_METRICS)
def test_extra_ensemble_variables_are_not_verified(func):
    ens, truth = make_case()
    result = func(ens, truth[["u"]])
    assert list(result.data_vars) == ["u"]


def test_dataset_with_dataarray_truth():
    ens, truth = make_case()
    with pytest.raises(VariableError, match="truth is a DataArray"):
        crps(ens, truth.u)


@pytest.mark.parametrize("func", [member_relative_error, spread_error_ratio, crps, rank_histogram])
def test_missing_member_dim(func):
    _, truth = make_case()
    with pytest.raises(CoordinateError, match="no member dimension 'ens'"):
        func(truth, truth, member_dim="ens")


def test_coordinate_mismatch_names_coordinate():
    ens, truth = make_case()
    shifted = truth.assign_coords(x=truth.x + 1.0)
    with pytest.raises(CoordinateError, match=r"variable 'u'.*along these coordinates.*'x'"):
        relative_rmse(ens, shifted)
    with pytest.raises(CoordinateError, match="do not align"):
        crps(ens, truth.isel(time=slice(0, 2)))


def test_truth_with_other_dimensions():
    ens, truth = make_case()
    with pytest.raises(ShapeError, match="truth of variable 'u' has dimensions"):
        spread_error_ratio(ens, truth.isel(time=0))
    with pytest.raises(ShapeError, match="member dimension 'member'"):
        relative_rmse(ens, ens)


@pytest.mark.parametrize(
    ("dim", "match"),
    [
        ("z", r"dim \['z'\] not among the dimensions"),
        (["x", "member"], "must not include the member dimension 'member'"),
        (3, "dim must be None, a str or a sequence of str"),
        (["x", "x"], "more than once"),
    ],
)
def test_bad_dim(dim, match):
    ens, truth = make_case()
    with pytest.raises(ConfigError, match=match):
        crps(ens, truth, dim=dim)


def test_too_few_members():
    ens, truth = make_case(k=1)
    with pytest.raises(ConfigError, match=r"spread-error ratio needs K >= 2 .* got K=1"):
        spread_error_ratio(ens, truth)
    with pytest.raises(ConfigError, match=r"fair CRPS needs K >= 2 .* got K=1; use fair=False"):
        crps(ens, truth)
    with pytest.raises(ConfigError, match="ddof must be 0"):
        spread_error_ratio(ens, truth, ddof=2)


def test_parameter_rmse_bad_input():
    est = xr.Dataset({"a": (("member", "time"), np.zeros((2, 3)))})
    with pytest.raises(VariableError, match=r"\['b'\] are missing from estimates"):
        parameter_rmse(est, {"a": 0.0, "b": 1.0})
    with pytest.raises(VariableError, match="no entry for parameter 'a'"):
        parameter_rmse(est, {"a": 0.0}, prior_range={"b": (0.0, 1.0)})
    with pytest.raises(ConfigError, match="prior_range of 'a' must be"):
        parameter_rmse(est, {"a": 0.0}, prior_range={"a": (1.0, 1.0)})
    with pytest.raises(VariableError, match="truth_params must be a Dataset or a mapping"):
        parameter_rmse(est, 0.0)
    with pytest.raises(VariableError, match="truth_params must be a DataArray or a number"):
        parameter_rmse(est.a, {"a": 0.0})
    with pytest.raises(ShapeError, match="has dimensions"):
        parameter_rmse(est, xr.Dataset({"a": ("case", [0.0, 1.0])}))
