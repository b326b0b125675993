"""The xarray <-> torch boundary: coordinate detection, schema, times, points."""

from __future__ import annotations

import datetime

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_runs
from xlevda._convert import (
    build_schema,
    find_time,
    spatial_layout,
    times_to_steps,
    to_points,
)
from xlevda._frames import DatasetFrameSource
from xlevda._times import time_values
from xlevda.errors import CoordinateError, ShapeError, VariableError
from xlevda.surrogates.schema import Affine, SurrogateSchema


def test_schema_of_runs(runs):
    schema = build_schema(runs, ["a", "b"])
    assert schema.variables == ("eta", "u")
    assert schema.coords == ("lat", "lon")
    assert schema.params == ("a", "b")
    assert schema.n_frames == 5
    assert schema.time_is_datetime and schema.time_step == pytest.approx(3600.0)
    assert schema.param_range[0] == (pytest.approx(runs.a.min()), pytest.approx(runs.a.max()))
    assert schema.output_norm.offset[0] == pytest.approx(float(runs.eta.mean()))
    assert SurrogateSchema.from_dict(schema.to_dict()) == schema


def test_schema_is_same_for_dask_backed_data(runs):
    assert build_schema(runs.chunk({"run": 2}), ["a", "b"]) == build_schema(runs, ["a", "b"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4),
    st.lists(st.floats(1e-3, 1e6), min_size=4, max_size=4),
)
def test_affine_round_trip(values, scales):
    aff = Affine(offset=tuple(values), scale=tuple(scales[: len(values)]))
    x = np.asarray(values) * 0.5 + 1.0
    np.testing.assert_allclose(aff.denormalize(aff.normalize(x)), x, rtol=1e-9, atol=1e-6)


def test_layout_grid_and_points(runs):
    assert spatial_layout(runs).gridded
    pts = runs.isel(run=0).stack(point=("lat", "lon")).reset_index("point")
    layout = spatial_layout(pts)
    assert not layout.gridded and layout.dims == ("point",)


def test_cf_attributes_identify_renamed_coordinates(runs):
    renamed = runs.rename({"lat": "row", "lon": "col"})
    assert spatial_layout(renamed).coords == ("row", "col")


def test_projection_coordinates_found():
    ds = xr.Dataset(coords={"x": ("x", np.arange(3.0), {"axis": "X"}), "y": ("y", np.arange(2.0))})
    assert spatial_layout(ds).coords == ("y", "x")


def test_times_to_steps_off_grid(runs):
    schema = build_schema(runs, ["a", "b"])
    t = runs.time.values[1] + np.timedelta64(900, "s")
    step, frac = times_to_steps([runs.time.values[2], t], schema)
    assert step.tolist() == [2, 1]
    np.testing.assert_allclose(frac, [0.0, 0.25])


def test_times_outside_range(runs):
    schema = build_schema(runs, ["a", "b"])
    late = runs.time.values[-1] + np.timedelta64(1, "h")
    with pytest.raises(CoordinateError, match="outside the surrogate's time range"):
        times_to_steps([late], schema)
    step, _ = times_to_steps([late], schema, extrapolate=True)
    assert step[0] == 5
    with pytest.raises(CoordinateError, match="numbers"):
        times_to_steps([1.0], schema)


def test_points_outside_domain(runs):
    schema = build_schema(runs, ["a", "b"])
    pts, _ = to_points(runs, schema)
    assert pts.shape == (72, 2) and np.abs(pts).max() == pytest.approx(1.0)
    far = xr.Dataset(coords={"lat": [42.0], "lon": [-150.0]})
    with pytest.raises(CoordinateError, match=r"lon=-150; expected .*lon in \[-160, -155\]"):
        to_points(far, schema)


def test_training_grid_in_float32_is_inside_its_domain():
    """-160.3 rounds to -160.30000305 in float32: 1.3e-6 outside in normalized units, within
    the float32 tolerance (2 eps |160.3| / 2.3 = 3.3e-6) but not the float64 one (1e-9)."""
    runs = make_runs(n_runs=3, n_frames=2).assign_coords(
        lat=np.linspace(40.1, 44.3, 8), lon=np.linspace(-160.3, -155.7, 9)
    )
    schema = build_schema(runs, ["a", "b"])
    grid = runs.isel(run=0)
    single = grid.assign_coords(lat=grid.lat.astype("float32"), lon=grid.lon.astype("float32"))
    assert float(single.lon[0]) < -160.3  # rounded outward
    pts, _ = to_points(single, schema)
    np.testing.assert_allclose(pts, to_points(grid, schema)[0], atol=4e-6)
    beyond = xr.Dataset(coords={"lat": [42.0], "lon": [-160.3 - 1e-5]})
    with pytest.raises(CoordinateError, match="outside the surrogate's domain"):
        to_points(beyond, schema)
    with pytest.raises(CoordinateError, match="outside the surrogate's domain"):
        to_points(beyond.astype("float32").assign_coords(lon=np.float32([-160.31])), schema)


def test_bad_spatial_coordinates_are_named(runs):
    schema = build_schema(runs, ["a", "b"])
    grid = runs.isel(run=0)
    with pytest.raises(CoordinateError, match=r"spatial coordinate 'lon' is empty"):
        to_points(grid.isel(lon=slice(0, 0)), schema)
    lat = grid.lat.values.astype(object)
    lat[2] = None
    with pytest.raises(CoordinateError, match=r"'lat' must hold real numbers.*1 of 8, e.g. None"):
        to_points(grid.assign_coords(lat=lat), schema)


@pytest.mark.parametrize(
    ("times", "match"),
    [
        (np.array(["2026-01-01T01", "NaT"], "datetime64[ns]"), r"'t' holds NaT .*: 1 of 2"),
        (np.array(["2026-01-01T01"]), r"got strings .*pandas.to_datetime"),
        (np.array([pd.Period("2026-01-01T01", "h")]), r"got pandas Periods"),
        (np.array([pd.Timestamp("2026-01-01T01", tz="UTC")]), r"got timezone-aware times"),
        (np.array([1.0, np.inf]), r"'t' must hold finite real numbers, got infinite values"),
        (np.array([1 + 1j]), r"'t' must hold real numbers, got complex numbers"),
    ],
)
def test_times_of_other_kinds_are_named(times, match):
    with pytest.raises(CoordinateError, match=match):
        time_values(times, "t")


def test_naive_python_datetimes_are_datetime64():
    t = np.array([pd.Timestamp("2026-01-01T01"), datetime.datetime(2026, 1, 1, 2)], object)
    assert (
        time_values(t, "t").tolist()
        == np.array(["2026-01-01T01", "2026-01-01T02"], "datetime64[ns]").tolist()
    )


def test_times_before_the_first_frame(runs):
    schema = build_schema(runs, ["a", "b"])
    early = runs.time.values[0] - np.timedelta64(1, "h")
    with pytest.raises(CoordinateError, match=r"precedes the first frame .*1 of 1 times"):
        times_to_steps([early], schema, extrapolate=True)


def test_no_time_coordinate():
    with pytest.raises(CoordinateError, match="no time coordinate found"):
        find_time(xr.Dataset(coords={"lat": [0.0]}))


def test_no_spatial_coordinates(runs):
    bad = runs.rename({"lat": "row", "lon": "col"})
    bad.row.attrs.clear()
    bad.col.attrs.clear()
    with pytest.raises(CoordinateError, match="no spatial coordinates found"):
        build_schema(bad, ["a", "b"])


def test_parameter_not_a_coordinate(runs):
    with pytest.raises(VariableError, match="parameter 'depth' is not a coordinate"):
        build_schema(runs, ["depth"])


def test_nan_in_training_data(runs):
    bad = runs.copy(deep=True)
    bad["eta"][0, 0, 0, 0] = np.nan
    with pytest.raises(VariableError, match="'eta' holds 1 NaN"):
        build_schema(bad, ["a", "b"])


def test_unknown_variable(runs):
    with pytest.raises(VariableError, match="variable 'sst' not found"):
        build_schema(runs, ["a"], variables=["sst"])


def test_mismatched_dims(runs):
    bad = runs.assign(w=runs.eta.isel(time=0))
    with pytest.raises(ShapeError, match="'w' has dimensions"):
        build_schema(bad, ["a"], variables=["eta", "w"])


def test_irregular_training_times(runs):
    t = runs.time.values.copy()
    t[-1] += np.timedelta64(10, "m")
    with pytest.raises(CoordinateError, match="uniformly spaced"):
        build_schema(runs.assign_coords(time=t), ["a"])


def test_streaming_source_matches_in_memory(runs):
    big = make_runs(n_runs=10)
    schema = build_schema(big, ["a", "b"])
    idx = np.arange(10)
    kw = {"batch_size": 3, "points_per_frame": None, "shuffle": False}
    mem = DatasetFrameSource(big, schema, idx)
    streamed = DatasetFrameSource(big.chunk({"run": 2}), schema, idx, chunk_runs=4, memory_budget=0)
    a = list(mem.batches(generator=torch.Generator().manual_seed(0), **kw))
    b = list(streamed.batches(generator=torch.Generator().manual_seed(0), **kw))
    torch.testing.assert_close(torch.cat([x.values for x in a]), torch.cat([x.values for x in b]))
    torch.testing.assert_close(torch.cat([x.params for x in a]), torch.cat([x.params for x in b]))


def _global_runs() -> xr.Dataset:
    runs = make_runs(n_runs=3, n_frames=2, ny=4, nx=8)
    lat = np.array([-67.5, -22.5, 22.5, 67.5])
    return runs.assign_coords(
        lat=("lat", lat, runs.lat.attrs), lon=("lon", np.arange(8) * 45.0, runs.lon.attrs)
    )


def test_global_grid_is_embedded_on_the_sphere():
    schema = build_schema(_global_runs(), ["a", "b"])
    assert schema.geometry == "sphere" and schema.n_coords == 3
    assert build_schema(make_runs(), ["a", "b"]).geometry == "plane"  # a regional box
    pts, _ = to_points(_global_runs(), schema)
    assert pts.shape == (32, 3) and np.allclose(np.linalg.norm(pts, axis=-1), 1.0)
    seam = xr.Dataset(coords={"lat": [10.0], "lon": [-179.9]})
    other = xr.Dataset(coords={"lat": [10.0], "lon": [180.1]})
    assert np.allclose(to_points(seam, schema)[0], to_points(other, schema)[0])
    east = xr.Dataset(coords={"lat": [-30.0, 0.0, 89.0], "lon": [0.0, 90.0, 270.0]})
    west = east.assign_coords(lon=[0.0, 90.0, -90.0])
    assert np.allclose(to_points(east, schema)[0], to_points(west, schema)[0])
    pole = to_points(xr.Dataset(coords={"lat": [90.0], "lon": [0.0, 123.0]}), schema)[0]
    assert np.allclose(pole, [0.0, 0.0, 1.0])  # every longitude is the same pole
    with pytest.raises(CoordinateError, match=r"lat=95.*expected lat in \[-90, 90\]"):
        to_points(xr.Dataset(coords={"lat": [95.0], "lon": [0.0]}), schema)


def test_float32_longitudes_and_unit_spellings_are_a_global_grid():
    runs = _global_runs()
    lon = np.arange(100, dtype=np.float32) * np.float32(3.6)
    lat = np.array([-67.5, -22.5, 22.5, 67.5])
    wide = make_runs(n_runs=3, n_frames=2, ny=4, nx=100).assign_coords(
        lat=("lat", lat, {"units": "degrees_N"}), lon=("lon", lon, {"units": "degree_east"})
    )
    assert build_schema(wide, ["a", "b"]).geometry == "sphere"
    assert build_schema(runs, ["a", "b"]).geometry == "sphere"


def test_schema_is_the_same_after_a_netcdf_round_trip(runs, tmp_path):
    runs = runs.assign_attrs(steps=np.int64(650), note="x")  # numpy scalars come back from files
    runs.to_netcdf(tmp_path / "r.nc")
    back = build_schema(xr.open_dataset(tmp_path / "r.nc"), ["a", "b"])
    assert back.attrs["steps"] == 650 and type(back.attrs["steps"]) is int
    assert back == build_schema(runs, ["a", "b"])
