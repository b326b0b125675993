"""Observation tables and window planning."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda._convert import build_schema
from xlevda._obs import ObsTable, obs_table, plan_windows
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
        (lambda o: o.drop_vars("lat"), "no coordinate matches the surrogate's .* 'lat'"),
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


def drifter_table(runs, schema, hours):
    """One observation at each of ``hours`` after frame 0 (irregular, drifter-like)."""
    hours = np.asarray(hours, float)
    t = runs.time.values[0] + (hours * 3600e9).astype("timedelta64[ns]")
    n = len(hours)
    obs = xr.Dataset(
        {"eta": ("obs", np.zeros(n)), "eta_std": ("obs", np.full(n, 0.1))},
        coords={
            "time": ("obs", t),
            "lat": ("obs", np.full(n, 42.0)),
            "lon": ("obs", np.full(n, -157.0)),
        },
    )
    return obs_table(obs, schema)


def windows_of(windows):
    return [(w.anchor, w.rows.tolist()) for w in windows]


@pytest.mark.parametrize(
    ("size", "stride", "duration", "duration_stride"),
    [
        (2, None, "2h", None),
        (1, None, np.timedelta64(60, "m"), None),
        (3, 1, datetime.timedelta(hours=3), pd.Timedelta("1h")),
        (4, 2, "4h", "2h"),
        (5, None, "5h", None),
    ],
)
def test_windows_by_duration_equal_windows_by_count_on_regular_times(
    runs, schema, size, stride, duration, duration_stride
):
    table = obs_table(point_obs(runs, n=40), schema)  # times on every hourly frame
    assert len(np.unique(table.step)) == runs.sizes["time"]
    by_count = windows_of(plan_windows(table, size, stride))
    assert windows_of(plan_windows(table, duration, duration_stride)) == by_count


def test_windows_by_duration_on_irregular_times(runs, schema):
    # a drifter: a burst, a gap of 2.5 h, sparse reports
    table = drifter_table(runs, schema, [0.0, 0.2, 0.4, 0.5, 3.0, 3.1, 3.9])
    windows = plan_windows(table, "1h")
    # [0, 1h): the burst; [1h, 2h) and [2h, 3h) are empty; [3h, 4h): the rest
    assert windows_of(windows) == [(-1, [0, 1, 2, 3]), (3, [4, 5, 6])]
    # overlapping: [0, 2h), [1h, 3h) empty, [2h, 4h), and it ends there (it holds the last time)
    assert windows_of(plan_windows(table, "2h", "1h")) == [(-1, [0, 1, 2, 3]), (3, [4, 5, 6])]
    # [0, 2h), [0.5h, 2.5h), [1h, 3h) empty, [1.5h, 3.5h), [2h, 4h): the first with 3.9 h
    assert windows_of(plan_windows(table, "2h", "30min")) == [
        (-1, [0, 1, 2, 3]),
        (0, [3]),
        (3, [4, 5]),
        (3, [4, 5, 6]),
    ]
    # counting observation times instead gives windows of 2 values each
    assert [len(w.rows) for w in plan_windows(table, 2)] == [2, 2, 2, 1]


def test_windows_by_duration_start_at_the_first_observation(runs, schema):
    table = drifter_table(runs, schema, [1.5, 2.0, 2.4, 3.6])
    # from t0 = 1.5 h: [1.5, 2.5) and [2.5, 3.5) (empty) and [3.5, 4.5)
    assert windows_of(plan_windows(table, "1h")) == [(-1, [0, 1, 2]), (3, [3])]


def test_windows_by_duration_need_datetime_times():
    t = ObsTable(
        np.arange(4.0),
        np.arange(4),
        np.zeros(4),
        np.zeros((4, 1)),
        np.zeros(4, int),
        np.zeros(4),
        np.ones(4),
    )
    with pytest.raises(
        ObservationError, match=r"needs datetime observation times, but they are numbers"
    ):
        plan_windows(t, "2h")
    with pytest.raises(ObservationError, match="two counts or two durations"):
        plan_windows(t, 2, "1h")


def reference_duration_windows(minutes, length, stride):
    """Window k holds the times in [t0 + k stride, t0 + k stride + length), by a plain loop."""
    windows, k = [], 0
    while True:
        lo = minutes[0] + k * stride
        rows = [i for i, m in enumerate(minutes) if lo <= m < lo + length]
        if rows:
            windows.append(rows)
        if lo + length > minutes[-1]:
            return windows
        k += 1


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 300), min_size=1, max_size=30),
    length=st.integers(1, 240),
    stride_fraction=st.floats(0.05, 1.0),
)
def test_windows_by_duration_equal_a_plain_loop(gaps, length, stride_fraction):
    minutes = np.cumsum(gaps)  # sorted, repeats allowed (several values at one time)
    stride = max(1, int(length * stride_fraction))
    n = len(minutes)
    table = ObsTable(
        np.datetime64("2026-01-01T00:00", "ns") + minutes * np.timedelta64(60, "s"),
        minutes // 60,
        (minutes % 60) / 60.0,
        np.zeros((n, 1)),
        np.zeros(n, int),
        np.zeros(n),
        np.ones(n),
    )
    windows = plan_windows(table, np.timedelta64(length, "m"), np.timedelta64(stride, "m"))
    assert [w.rows.tolist() for w in windows] == reference_duration_windows(
        minutes.tolist(), length, stride
    )
    assert windows[0].anchor == -1
    assert all(w.anchor == table.step[w.rows[0]] for w in windows[1:])
