"""Observation tables and window planning."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xlevda._convert import build_schema
from xlevda._obs import obs_table, plan_windows
from xlevda.errors import ObservationError


@pytest.fixture
def schema(runs):
    return build_schema(runs, ["a", "b"])


def point_obs(runs, n=6, seed=0, lon_shift=0.0):
    rng = np.random.default_rng(seed)
    t = runs.time.values[rng.integers(0, runs.sizes["time"], n)]
    lat = rng.uniform(40.5, 43.5, n)
    lon = rng.uniform(-159.5, -155.5, n) + lon_shift
    return xr.Dataset(
        {"eta": ("obs", rng.normal(size=n)), "eta_std": ("obs", np.full(n, 0.1))},
        coords={"time": ("obs", t), "lat": ("obs", lat), "lon": ("obs", lon)},
    )


def test_table_sorted_and_normalized(runs, schema):
    obs = point_obs(runs)
    table = obs_table(obs, schema)
    assert len(table) == 6
    assert (np.diff(table.time.astype("int64")) >= 0).all()
    assert (table.channel == 0).all()
    np.testing.assert_allclose(table.std, 0.1 / schema.output_norm.scale[0])
    order = np.argsort(obs.time.values, kind="stable")
    expected = (obs.eta.values[order] - schema.output_norm.offset[0]) / schema.output_norm.scale[0]
    np.testing.assert_allclose(table.value, expected)


def test_gridded_obs_with_nan_marks_unobserved(runs, schema):
    grid = runs.isel(run=0)[["eta", "u"]].copy(deep=True)
    grid["eta"][:, 1:, :] = np.nan  # eta only on the first latitude row
    table = obs_table(grid, schema, errors={"eta": 0.1, "u": 0.2})
    n_eta = runs.sizes["time"] * runs.sizes["lon"]
    n_u = runs.sizes["time"] * runs.sizes["lat"] * runs.sizes["lon"]
    assert (table.channel == 0).sum() == n_eta and (table.channel == 1).sum() == n_u


def test_longitudes_0_360_are_wrapped(runs, schema):
    a = obs_table(point_obs(runs), schema)
    b = obs_table(point_obs(runs, lon_shift=360.0), schema)
    np.testing.assert_allclose(a.points, b.points)


def test_mixed_longitude_conventions(runs, schema):
    obs = point_obs(runs)
    lon = obs.lon.values.copy()
    lon[0] += 360.0
    with pytest.raises(ObservationError, match="mixes longitude conventions"):
        obs_table(obs.assign_coords(lon=("obs", lon)), schema)


def test_outside_domain_error_and_drop(runs, schema):
    obs = point_obs(runs)
    lat = obs.lat.values.copy()
    lat[2] = 50.0
    far = obs.assign_coords(lat=("obs", lat))
    with pytest.raises(ObservationError, match=r"1 observation\(s\) lie outside .*lat=50"):
        obs_table(far, schema)
    table = obs_table(far, schema, outside="drop")
    assert len(table) == 5 and table.n_dropped == 1


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda o: o.rename({"eta": "sst", "eta_std": "sst_std"}), "'sst' is not produced"),
        (lambda o: o.drop_vars("eta_std"), "no observation error for 'eta'"),
        (lambda o: o.assign(eta_std=o.eta_std * 0), "must be finite and > 0, got 0.0"),
        (lambda o: o.assign(eta_std=-o.eta_std), "must be finite and > 0, got -0.1"),
        (lambda o: o.assign(eta=o.eta * np.nan), "'eta' holds only NaN"),
        (lambda o: o.drop_vars("lat"), "lack the position coordinate 'lat'"),
        (lambda o: o.drop_vars("time"), "no time coordinate"),
    ],
)
def test_bad_observations(runs, schema, change, match):
    with pytest.raises((ObservationError, ValueError), match=match):
        obs_table(change(point_obs(runs)), schema)


def test_times_outside_analysis_range(runs, schema):
    obs = point_obs(runs)
    with pytest.raises(ObservationError, match="outside the analysis time range"):
        obs_table(obs, schema, time_range=(runs.time.values[1], runs.time.values[2]))


def test_windows_cover_each_time_once(runs, schema):
    obs = point_obs(runs, n=40)
    table = obs_table(obs, schema)
    windows = plan_windows(table, 2)
    rows = np.concatenate([w.rows for w in windows])
    np.testing.assert_array_equal(np.sort(rows), np.arange(len(table)))
    assert windows[0].anchor == -1
    assert all(w.anchor == table.step[w.rows[0]] for w in windows[1:])


def test_first_window_anchored_at_a_later_initial_ensemble(runs, schema):
    table = obs_table(point_obs(runs, n=40), schema)
    later = table.select(np.nonzero(table.step >= 2)[0])
    windows = plan_windows(later, 2, first_anchor=2)
    assert windows[0].anchor == 2
    with pytest.raises(ObservationError, match=r"precede the initial ensemble's time \(latent"):
        plan_windows(table, 2, first_anchor=2)


def test_overlapping_windows(runs, schema):
    table = obs_table(point_obs(runs, n=40), schema)
    n_times = len(np.unique(table.step + table.frac))
    windows = plan_windows(table, 3, stride=1)
    assert len(windows) == n_times - 2


@pytest.mark.parametrize(("size", "stride", "match"), [(0, None, "tau=0"), (2, 3, "stride 3")])
def test_bad_window(runs, schema, size, stride, match):
    with pytest.raises(ObservationError, match=match):
        plan_windows(obs_table(point_obs(runs), schema), size, stride)
