"""Observation sampling on cheap synthetic truths (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.errors import ConfigError, CoordinateError, VariableError
from xlevda.systems.observe import (
    EveryFrame,
    FrameStride,
    GridStride,
    MovingPoints,
    RandomPoints,
    RandomTimes,
    observe,
)


def make_truth(nt: int = 4, ny: int = 150, nx: int = 150, seed: int = 0) -> xr.Dataset:
    """Random fields on a (time, lat, lon) grid, labelled like the tsunami output."""
    rng = np.random.default_rng(seed)
    time = np.datetime64("2026-01-01", "ns") + np.arange(nt) * np.timedelta64(900, "s")
    dims = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "eta": (dims, rng.normal(size=(nt, ny, nx)), {"units": "m", "long_name": "height"}),
            "u": (dims, 3.0 * rng.normal(size=(nt, ny, nx)), {"units": "m s-1"}),
        },
        coords={
            "time": ("time", time, {"standard_name": "time"}),
            "lat": ("lat", np.linspace(38.8, 47.8, ny), {"standard_name": "latitude"}),
            "lon": ("lon", np.linspace(159.0, 171.0, nx), {"standard_name": "longitude"}),
            "x": ("lon", np.linspace(-5e5, 5e5, nx), {"units": "m"}),
        },
    )


def truth_at(truth: xr.Dataset, obs: xr.Dataset, name: str) -> np.ndarray:
    """Truth values of ``name`` at each observation's (time, lat, lon), looked up by label."""
    where = {c: obs[c] for c in ("time", "lat", "lon")}
    return truth[name].sel(where).values


def test_grid_stride_gives_the_centred_10x10_network():
    truth = make_truth(nt=2)
    obs = observe(truth, GridStride(15), variables=["eta"], noise_ratio=0.0)
    assert obs.sizes["obs"] == 2 * 100
    cells = np.unique(np.stack([obs.lat.values, obs.lon.values]), axis=1)
    assert cells.shape[1] == 100
    np.testing.assert_allclose(np.unique(obs.lat), truth.lat.values[7:150:15])
    assert set(obs.data_vars) == {"eta", "eta_std"}


def test_random_points_are_fixed_and_moving_points_move():
    truth = make_truth(nt=3, ny=10, nx=12)
    fixed = observe(truth, RandomPoints(20), variables=["eta"])
    moving = observe(truth, MovingPoints(20), variables=["eta"])
    for obs in (fixed, moving):
        assert obs.sizes["obs"] == 3 * 20
    spots = [
        {(a, b) for a, b in zip(o.lat.values, o.lon.values, strict=True)} for o in (fixed, moving)
    ]
    assert len(spots[0]) == 20
    per_time = [
        set(zip(g.lat.values, g.lon.values, strict=True)) for _, g in moving.groupby("time")
    ]
    assert all(len(s) == 20 for s in per_time) and per_time[0] != per_time[1]


def test_time_selections():
    truth = make_truth(nt=10, ny=6, nx=6)
    assert np.unique(observe(truth, GridStride(3), EveryFrame()).time).size == 10
    strided = np.unique(observe(truth, GridStride(3), FrameStride(4, offset=1)).time)
    np.testing.assert_array_equal(strided, truth.time.values[[1, 5, 9]])
    obs = observe(truth, GridStride(3), RandomTimes(4), seed=5)
    assert np.all(np.diff(obs.time.values.astype(np.int64)) >= 0)
    chosen = np.unique(obs.time)
    assert chosen.size == 4 and np.isin(chosen, truth.time.values).all()


def test_noise_has_the_documented_standard_deviation():
    truth = make_truth(nt=4, ny=100, nx=100)
    obs = observe(truth, GridStride(1), noise_ratio=0.2, seed=1)
    for name in ("eta", "u"):
        expected = 0.2 * float(truth[name].std())
        np.testing.assert_allclose(obs[f"{name}_std"], expected)
        error = obs[name].values - truth_at(truth, obs, name)
        assert np.std(error) == pytest.approx(expected, rel=0.02)
        assert abs(np.mean(error)) < 0.02 * expected


def test_zero_noise_is_the_truth_with_attrs_and_positions():
    truth = make_truth(nt=3, ny=20, nx=20)
    obs = observe(truth, MovingPoints(7), FrameStride(2), noise_ratio=0.0)
    np.testing.assert_array_equal(obs.eta.values, truth_at(truth, obs, "eta"))
    np.testing.assert_array_equal(obs.x.values, truth.x.sel(lon=obs.lon).values)
    assert obs.eta.attrs["units"] == "m" and obs.eta.attrs["ancillary_variables"] == "eta_std"
    assert obs.eta_std.attrs == {
        "long_name": "height observation error standard deviation",
        "units": "m",
    }
    assert obs.lat.attrs == truth.lat.attrs and obs.time.dims == ("obs",)
    assert obs.attrs["featureType"] == "point" and obs.attrs["noise_ratio"] == 0.0


@settings(max_examples=25, deadline=None)
@given(
    stride=st.integers(1, 7),
    offset=st.one_of(st.none(), st.integers(0, 8)),
    ny=st.integers(9, 16),
    nx=st.integers(9, 16),
)
def test_noise_free_observations_equal_the_truth_at_their_coordinates(stride, offset, ny, nx):
    truth = make_truth(nt=3, ny=ny, nx=nx)
    obs = observe(truth, GridStride(stride, offset), noise_ratio=0.0)
    n_lat = len(range(offset or 0, ny, stride)) if offset is not None else -(-ny // stride)
    n_lon = len(range(offset or 0, nx, stride)) if offset is not None else -(-nx // stride)
    assert obs.sizes["obs"] == 3 * n_lat * n_lon
    for name in ("eta", "u"):
        np.testing.assert_array_equal(obs[name].values, truth_at(truth, obs, name))


def test_same_seed_same_result_and_generators_accepted():
    truth = make_truth(nt=5, ny=12, nx=12)
    args = (MovingPoints(5), RandomTimes(3))
    xr.testing.assert_identical(observe(truth, *args, seed=4), observe(truth, *args, seed=4))
    assert not observe(truth, *args, seed=4).eta.equals(observe(truth, *args, seed=5).eta)
    a = observe(truth, *args, seed=np.random.default_rng(9))
    b = observe(truth, *args, seed=np.random.default_rng(9))
    np.testing.assert_array_equal(a.eta, b.eta)


def test_a_single_run_is_accepted_and_several_are_not():
    runs = xr.concat([make_truth(nt=2, ny=6, nx=6)] * 2, dim="run")
    obs = observe(runs.isel(run=[0]), GridStride(2))
    assert "run" not in obs.dims and "run" not in obs.coords
    with pytest.raises(CoordinateError, match=r"dimension 'run' has size 2: .*isel\(run=0\)"):
        observe(runs, GridStride(2))


def test_bad_input_is_rejected():
    truth = make_truth(nt=3, ny=6, nx=6)
    with pytest.raises(VariableError, match=r"cannot observe variable 'w'.*\['eta', 'u'\]"):
        observe(truth, variables=["w"])
    with pytest.raises(ConfigError, match=r"GridStride.stride must be an integer >= 1, got 0"):
        GridStride(0)
    with pytest.raises(ConfigError, match=r"GridStride.offset = 6 is outside the latitude axis"):
        observe(truth, GridStride(2, offset=6))
    with pytest.raises(ConfigError, match=r"RandomPoints.n = 37 exceeds the 6x6 = 36 grid cells"):
        observe(truth, RandomPoints(37))
    with pytest.raises(ConfigError, match=r"RandomTimes.n = 4 exceeds the truth's 3 times"):
        observe(truth, GridStride(2), RandomTimes(4))
    with pytest.raises(ConfigError, match=r"noise_ratio must be finite and >= 0, got -0.1"):
        observe(truth, noise_ratio=-0.1)
    with pytest.raises(ConfigError, match=r"layout must be GridStride.*got 'grid'"):
        observe(truth, "grid")
    with pytest.raises(CoordinateError, match=r"no latitude dimension coordinate"):
        observe(truth.drop_vars("lat"))
    with pytest.raises(CoordinateError, match=r"no time dimension coordinate"):
        observe(truth.isel(time=0))
