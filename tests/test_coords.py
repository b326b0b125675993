"""Coordinates as users have them (issue 19 item 3): a metre grid beside parameters in
degrees, an explicit ``coords=``, curvilinear grids (2-D latitude and longitude), regions
across the dateline and observations matched by CF standard name or common names.

Each archive is fitted in closed form (the linear LDNet), which is deterministic: two
fits on the same training points give the same model up to round-off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import xlevda
from xlevda._obs import obs_table
from xlevda.errors import ConfigError, CoordinateError, ObservationError
from xlevda.methods import LEVDA, ModelErrorTerm
from xlevda.run import RunOptions

LINEAR = xlevda.LDNetConfig(
    latent_dim=3,
    learnable_dt=False,
    dynamics=xlevda.LinearDynamicsConfig(),
    decoder=xlevda.CosineDecoderConfig(n_terms=4),
    train=xlevda.TrainConfig(validation_fraction=0.25),
)
LAT = {"standard_name": "latitude", "units": "degrees_north"}
LON = {"standard_name": "longitude", "units": "degrees_east"}
N_RUNS, N_FRAMES = 5, 4
pytestmark = pytest.mark.filterwarnings("ignore:the fitted linear latent step:UserWarning")


def _params(n_runs: int = N_RUNS) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, n_runs), rng.uniform(0.5, 1.5, n_runs)


def _fields(yn: np.ndarray, xn: np.ndarray) -> np.ndarray:
    """A bump drifting along x, over (run, time, *yn.shape), at normalized positions."""
    a, b = _params()
    t = np.arange(N_FRAMES)
    centre = (a[:, None] + 0.1 * b[:, None] * t[None, :])[(...,) + (None,) * yn.ndim]
    return np.exp(-((xn - centre) ** 2 + yn**2) / 0.5)


def _archive(space: dict, dims: tuple[str, ...], yn, xn, param_attrs=None) -> xr.Dataset:
    """Runs over ``(run, time, *dims)`` with coordinates ``space`` and parameters a, b."""
    a, b = _params()
    time = np.datetime64("2026-01-01T00", "ns") + np.arange(N_FRAMES) * np.timedelta64(1, "h")
    eta = _fields(yn, xn)
    pa, pb = param_attrs or ({}, {})
    return xr.Dataset(
        {"eta": (("run", "time", *dims), eta, {"units": "m"})},
        coords={
            "run": np.arange(N_RUNS),
            "time": ("time", time, {"standard_name": "time"}),
            **space,
            "a": ("run", a, pa),
            "b": ("run", b, pb),
        },
    )


def metre_grid(names=("y", "x"), param_attrs=(LAT, LON)) -> xr.Dataset:
    """A 6 x 5 grid in metres with parameters carrying latitude/longitude units."""
    y, x = np.linspace(-2e5, 2e5, 6), np.linspace(-3e5, 3e5, 5)
    yn, xn = np.meshgrid(y / 2e5, x / 3e5, indexing="ij")
    space = {
        names[0]: (names[0], y, {"units": "m", "standard_name": "projection_y_coordinate"}),
        names[1]: (names[1], x, {"units": "m", "standard_name": "projection_x_coordinate"}),
    }
    return _archive(space, names, yn, xn, param_attrs)


def lat_lon_grid(lon: np.ndarray) -> xr.Dataset:
    """A 6-latitude grid on the longitudes ``lon`` (degrees, in any convention)."""
    lat = np.linspace(-5.0, 5.0, 6)
    unwrapped = np.unwrap(np.deg2rad(lon), period=2 * np.pi)
    yn, xn = np.meshgrid(lat / 5, (unwrapped - unwrapped.mean()) / np.ptp(unwrapped), indexing="ij")
    space = {"lat": ("lat", lat, LAT), "lon": ("lon", lon, LON)}
    return _archive(space, ("lat", "lon"), yn, xn)


def curvilinear_grid() -> xr.Dataset:
    """A 6 x 5 grid rotated by 30 degrees: 2-D ``lat(y, x)`` and ``lon(y, x)``."""
    j, i = np.meshgrid(np.arange(6.0), np.arange(5.0), indexing="ij")
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    lat, lon = 40.0 + 0.5 * (c * j + s * i), -160.0 + 0.5 * (c * i - s * j)
    yn, xn = (lat - lat.mean()) / np.ptp(lat), (lon - lon.mean()) / np.ptp(lon)
    space = {
        "y": ("y", np.arange(6.0), {"units": "1", "long_name": "row"}),
        "x": ("x", np.arange(5.0), {"units": "1", "long_name": "column"}),
        "lat": (("y", "x"), lat, LAT),
        "lon": (("y", "x"), lon, LON),
    }
    return _archive(space, ("y", "x"), yn, xn)


def fit(ds: xr.Dataset, **kw) -> xlevda.LDNet:
    return xlevda.LDNet.fit(ds, ["a", "b"], LINEAR, progress=False, **kw)


def forecast(model: xlevda.LDNet) -> np.ndarray:
    return model.predict({"a": [0.1, -0.2], "b": [1.0, 1.2]}).eta.values


# --- a metre grid beside parameters in degrees ---------------------------------------------


def test_metre_grid_with_degree_parameters_fits_as_the_renamed_grid():
    """Was: ValueError: axes don't match array (the parameters were taken as space)."""
    model = fit(metre_grid())
    assert model.schema.coords == ("y", "x")
    plain = fit(metre_grid(param_attrs=({}, {})))  # parameters without units: always worked
    renamed = fit(metre_grid(names=("north", "east")), coords=["north", "east"])
    assert renamed.schema.coords == ("north", "east")
    np.testing.assert_allclose(forecast(model), forecast(plain), rtol=0, atol=1e-12)
    np.testing.assert_allclose(forecast(model), forecast(renamed), rtol=0, atol=1e-12)


def test_coords_override_is_checked():
    ds = metre_grid()
    with pytest.raises(ConfigError, match=r"coords \['a', 'x'\] names the parameter\(s\) \['a'\]"):
        fit(ds, coords=["a", "x"])
    with pytest.raises(CoordinateError, match="spatial coordinate 'z' not found"):
        fit(ds, coords=["y", "z"])
    with pytest.raises(ConfigError, match="coords must be a list of names, got 'yx'"):
        fit(ds, coords="yx")


def test_no_spatial_coordinates_names_what_was_left_out():
    ds = metre_grid(names=("row", "col"))
    ds.row.attrs, ds.col.attrs = {}, {}
    with pytest.raises(CoordinateError, match=r"not space: \['a', 'b', 'run', 'time'\].*coords="):
        fit(ds)


# --- regions across the dateline -----------------------------------------------------------

LON_360 = np.linspace(170.0, 190.0, 9)
LON_180 = np.where(LON_360 > 180.0, LON_360 - 360.0, LON_360)


def test_dateline_region_in_either_convention_gives_the_same_surrogate():
    """Was: ConfigError about cosine products (the -180..180 box spanned the globe)."""
    east, west = fit(lat_lon_grid(LON_360)), fit(lat_lon_grid(LON_180))
    np.testing.assert_allclose(west.schema.coord_norm.offset, (0.0, 180.0), atol=1e-12)
    np.testing.assert_allclose(west.schema.coord_norm.scale, east.schema.coord_norm.scale)
    np.testing.assert_allclose(forecast(east), forecast(west), rtol=0, atol=1e-12)
    out = west.predict({"a": 0.1, "b": 1.0})
    np.testing.assert_array_equal(out.lon.values, LON_180)  # labels as in training


def _point_obs(lon: np.ndarray) -> xr.Dataset:
    rng = np.random.default_rng(1)
    n = 12
    time = np.datetime64("2026-01-01T00", "ns") + rng.integers(0, N_FRAMES, n) * np.timedelta64(
        1, "h"
    )
    pick = rng.integers(0, lon.size, n)
    return xr.Dataset(
        {"eta": ("obs", rng.uniform(0.0, 1.0, n)), "eta_std": ("obs", np.full(n, 0.05))},
        coords={
            "time": ("obs", time),
            "lat": ("obs", rng.uniform(-4.0, 4.0, n), LAT),
            "lon": ("obs", lon[pick], LON),
        },
    )


def test_dateline_analyses_agree_across_conventions():
    east, west = fit(lat_lon_grid(LON_360)), fit(lat_lon_grid(LON_180))
    run = RunOptions(members=4, dtype="float64", seed=3)
    method = LEVDA(window=2, model_error=ModelErrorTerm())
    renamed = _point_obs(LON_180).rename(lat="phi", lon="lam")
    results = []
    for model, grid, obs, kw in (
        (east, LON_360, _point_obs(LON_360), {}),
        (west, LON_180, _point_obs(LON_180), {}),
        (west, LON_180, _point_obs(LON_360), {}),  # observations in the other convention
        (west, LON_180, renamed, {"obs_coords": ["phi", "lam"]}),
    ):
        target = lat_lon_grid(grid).isel(run=0).drop_vars(["eta", "a", "b", "run"])
        an = xlevda.assimilate(target, obs, model, method, run=run, **kw)
        results.append(an.eta.values)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-9)


def test_dateline_observations_map_to_the_same_points():
    schema = fit(lat_lon_grid(LON_180)).schema
    a = obs_table(_point_obs(LON_360), schema)
    b = obs_table(_point_obs(LON_180), schema)
    np.testing.assert_allclose(a.points, b.points, rtol=0, atol=1e-12)
    assert np.abs(a.points).max() <= 1 + 1e-12


# --- curvilinear grids ---------------------------------------------------------------------


def test_curvilinear_grid_is_the_same_fit_as_its_points():
    """Was: CoordinateError (2-D latitude and longitude could not be used)."""
    ds = curvilinear_grid()
    model = fit(ds)
    assert model.schema.coords == ("lat", "lon")
    assert model.schema.grid_shape == {"y": 6, "x": 5}
    on_index = fit(ds, coords=["y", "x"]).schema  # the 1-D row and column numbers instead
    assert on_index.coords == ("y", "x") and on_index.grid_shape == {}
    points = ds.drop_vars(["y", "x"]).stack(point=("y", "x")).reset_index("point")
    points = points.drop_vars([c for c in ("y", "x") if c in points.coords])
    scattered = fit(points)
    where = xr.Dataset(coords={"lat": ds.lat, "lon": ds.lon})
    out = model.predict({"a": 0.1, "b": 1.0})
    assert out.eta.dims == ("time", "y", "x") and out.lat.dims == ("y", "x")
    np.testing.assert_array_equal(out.lat.values, ds.lat.values)
    np.testing.assert_allclose(
        out.eta.values,
        scattered.predict({"a": 0.1, "b": 1.0}, where=where).eta.values,
        rtol=0,
        atol=1e-10,
    )


def test_curvilinear_surrogate_file_round_trip(tmp_path):
    model = fit(curvilinear_grid())
    model.save(tmp_path / "m.pt")
    back = xlevda.load_surrogate(tmp_path / "m.pt")
    assert back.schema == model.schema
    np.testing.assert_array_equal(forecast(back), forecast(model))


def test_curvilinear_assimilation_round_trip():
    """Observations of one run on the 2-D grid: the analysis is on lat(y, x), lon(y, x)
    and fits the observed run better than the forecast does."""
    ds = curvilinear_grid()
    model = fit(ds)
    truth = ds.isel(run=0)
    obs = truth[["eta"]].assign(eta_std=xr.full_like(truth.eta, 0.01))
    obs = obs.drop_vars(["a", "b", "run"])
    target = truth.drop_vars(["eta", "a", "b", "run"])
    run = RunOptions(members=6, dtype="float64", seed=0)
    an = xlevda.assimilate(target, obs, model, LEVDA(window=2), run=run)
    assert an.eta.dims == ("time", "member", "y", "x") and an.lat.dims == ("y", "x")
    error = float(np.abs(an.eta.mean("member") - truth.eta).max())
    prior = model.predict({"a": np.mean(model.schema.param_range[0]), "b": 1.0})
    assert error < float(np.abs(prior.eta - truth.eta).max())
    assert error < 0.05


# --- observations matched by CF identity and common names ----------------------------------


def _obs_on(names: tuple[str, str], attrs=(LAT, LON)) -> xr.Dataset:
    obs = _point_obs(LON_360).rename({"lat": names[0], "lon": names[1]})
    for n, a in zip(names, attrs, strict=True):
        obs[n].attrs = dict(a)
    return obs


def test_observations_match_by_standard_name_then_common_name():
    """Was: lacking the position coordinate 'lat' for observations on latitude/longitude."""
    schema = fit(lat_lon_grid(LON_360)).schema
    expected = obs_table(_obs_on(("lat", "lon")), schema)
    for names, attrs in (
        (("latitude", "longitude"), (LAT, LON)),  # common names, CF attributes
        (("nav_y", "nav_x"), (LAT, LON)),  # by standard name alone
        (("phi", "lam"), ({"units": "degrees_north"}, {"units": "degrees_east"})),  # by units
        (("latitude", "longitude"), ({}, {})),  # by common name alone
    ):
        table = obs_table(_obs_on(names, attrs), schema)
        np.testing.assert_array_equal(table.points, expected.points)


def test_observation_coordinates_never_matched_silently():
    schema = fit(lat_lon_grid(LON_360)).schema
    obs = _obs_on(("latitude", "longitude"))
    two = obs.assign_coords(nav_lat=obs.latitude)
    with pytest.raises(ObservationError, match=r"\['latitude', 'nav_lat'\] all match .* 'lat'"):
        obs_table(two, schema)
    table = obs_table(two, schema, coords={"lat": "nav_lat"})
    np.testing.assert_array_equal(table.points, obs_table(obs, schema).points)
    bare = _obs_on(("p", "q"), ({}, {}))
    with pytest.raises(ObservationError, match=r"no coordinate matches .* 'lat': found .*'p', 'q'"):
        obs_table(bare, schema)
    np.testing.assert_array_equal(
        obs_table(bare, schema, coords=["p", "q"]).points, obs_table(obs, schema).points
    )
    with pytest.raises(ObservationError, match=r"coords names \['depth'\], not spatial"):
        obs_table(obs, schema, coords={"depth": "latitude"})
    with pytest.raises(ObservationError, match="a different coordinate for each"):
        obs_table(obs, schema, coords=["latitude", "latitude"])
    with pytest.raises(ObservationError, match=r"'nope' is not a coordinate of the observations"):
        obs_table(obs, schema, coords={"lat": "nope"})


def test_projection_surrogate_does_not_take_latitude_for_y():
    schema = fit(metre_grid()).schema
    obs = _obs_on(("lat", "lon"))
    with pytest.raises(ObservationError, match="spatial coordinate 'y'"):
        obs_table(obs, schema)


# --- distances of the field analysis (xlevda.field_analysis.metric_of) ---------------------


@pytest.mark.parametrize("ds", [lat_lon_grid(LON_180), curvilinear_grid()], ids=["dateline", "2d"])
def test_field_analysis_distances_are_great_circles(ds):
    """Two points one degree of longitude apart on the equator (across the dateline in the
    first case, given in the other convention) are 111.19 km apart."""
    import torch

    from xlevda.core.field_analysis import EARTH_RADIUS_KM
    from xlevda.field_analysis import metric_of

    schema = fit(ds).schema
    metric = metric_of(schema)
    assert metric.kind == "latlon"
    lon = schema.coord_norm.offset[1]
    lon = 179.5 if lon > 170 else lon
    pts, _ = schema.embed(np.array([[0.0, lon], [0.0, lon + 1.0 - 360.0]]))
    d = float(metric.distance(torch.tensor(pts[:1]), torch.tensor(pts[1:]))[0, 0])
    np.testing.assert_allclose(d, EARTH_RADIUS_KM * np.deg2rad(1.0), rtol=1e-9)


# --- surrogate files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tsunami", "kolmogorov", "sphere"])
def test_shipped_surrogate_schemas_read_and_write_as_stored(name):
    """Files without ``grid_shape`` load, and write the very schema they store."""
    from pathlib import Path

    import torch

    stored = torch.load(
        Path(xlevda.__file__).parent / "pretrained" / f"{name}.pt",
        weights_only=True,
        map_location="cpu",
    )["schema"]
    assert "grid_shape" not in stored
    schema = xlevda.load_pretrained(name).schema
    assert schema.grid_shape == {} and schema.to_dict() == stored


def test_bad_grid_shape_is_refused():
    from xlevda.errors import SurrogateFileError
    from xlevda.surrogates.filecheck import schema_from_dict

    data = fit(curvilinear_grid()).schema.to_dict()
    assert data["grid_shape"] == {"y": 6, "x": 5}
    with pytest.raises(SurrogateFileError, match=r"grid_shape \{'y': 6, 'x': 4\} needs 24 values"):
        schema_from_dict("f", data | {"grid_shape": {"y": 6, "x": 4}})
    with pytest.raises(SurrogateFileError, match="sizes >= 1"):
        schema_from_dict("f", data | {"grid_shape": {"y": 0, "x": 5}})


def test_where_locations_match_by_common_name_and_either_longitude_convention():
    model = fit(lat_lon_grid(LON_180))
    lat, lon = np.array([-3.0, 0.5, 4.0]), np.array([171.0, 179.9, -172.0])
    where = xr.Dataset(coords={"lat": ("p", lat, LAT), "lon": ("p", lon, LON)})
    expected = model.predict({"a": 0.1, "b": 1.0}, where=where).eta.values
    other = xr.Dataset(coords={"latitude": ("p", lat), "longitude": ("p", np.mod(lon, 360))})
    out = model.predict({"a": 0.1, "b": 1.0}, where=other)
    assert out.eta.dims == ("time", "p") and "latitude" in out.coords
    np.testing.assert_allclose(out.eta.values, expected, rtol=0, atol=1e-12)
    with pytest.raises(CoordinateError, match=r"locations: no coordinate matches .* 'lat'"):
        model.predict({"a": 0.1, "b": 1.0}, where=other.rename(latitude="phi"))


@settings(max_examples=30, deadline=None)
@given(
    start=st.floats(-360.0, 360.0),
    width=st.floats(1.0, 300.0),
    n=st.integers(2, 12),
    turns=st.integers(-2, 2),
)
def test_unwrapped_longitudes_are_one_interval_in_any_convention(start, width, n, turns):
    """A region (points closer together than the gap around the rest of the globe) given
    in -180..180, 0..360 or shifted by whole turns unwraps to the region plus one
    multiple of 360 degrees, and every convention embeds to the same query points."""
    from hypothesis import assume

    from xlevda._coords import unwrap_longitudes
    from xlevda.surrogates.schema import Affine, SurrogateSchema

    assume(width / (n - 1) < 360.0 - width - 1e-6)
    lon = start + np.linspace(0.0, width, n)
    for given_lon in ((lon + 180.0) % 360.0 - 180.0, lon % 360.0, lon + 360.0 * turns):
        shift = (unwrap_longitudes(given_lon) - lon) / 360.0
        np.testing.assert_allclose(shift, np.round(shift[0]), rtol=0, atol=1e-9)
    u = unwrap_longitudes(lon % 360.0)
    schema = SurrogateSchema.minimal(2, coords=("lat", "lon"))
    schema = dataclasses.replace(
        schema, coord_norm=Affine.from_range([0.0, u.min()], [1.0, u.max()])
    )
    pos = np.stack([np.zeros(n), lon % 360.0], -1)
    points, inside = schema.embed(pos)
    assert inside.all()
    other, _ = schema.embed(np.stack([np.zeros(n), (lon + 180.0) % 360.0 - 180.0], -1))
    np.testing.assert_allclose(other, points, rtol=0, atol=1e-12)


def test_command_line_train_names_the_spatial_coordinates(tmp_path):
    from xlevda.cli import main

    runs, model = tmp_path / "runs.nc", tmp_path / "m.pt"
    curvilinear_grid().to_netcdf(runs)
    train = ["train", str(runs), "--params", "a", "b", "--decoder", "linear", "--latent-dim", "3"]
    for coords, expected in ((["--coords", "y", "x"], ("y", "x")), ([], ("lat", "lon"))):
        assert main([*train, "--cosine-terms", "4", *coords, "-q", "-o", str(model)]) == 0
        assert xlevda.load_surrogate(model).schema.coords == expected
