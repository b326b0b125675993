"""LDNet's xarray face: fit from a Dataset, predict labelled forecasts, save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xlevda
from tests.conftest import make_runs
from xlevda.errors import ConfigError, CoordinateError, SurrogateFileError, VariableError


@pytest.fixture(scope="module")
def runs():
    return make_runs(n_runs=8, n_frames=6)


@pytest.fixture(scope="module")
def model(runs):
    torch.manual_seed(0)
    cfg = xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        train=xlevda.TrainConfig(epochs=4, validation_fraction=0.25),
    )
    return xlevda.LDNet.fit(runs, ["a", "b"], cfg, progress=False)


def test_fit_records_schema_and_history(model, runs):
    assert model.schema.params == ("a", "b")
    assert model.schema.variables == ("eta", "u")
    assert len(model.history.val_rel_rmse) == 4
    assert model.schema.variable_attrs[0]["units"] == "m"


def test_predict_default_grid_and_frames(model, runs):
    fc = model.predict({"a": runs.a.values[:3], "b": runs.b.values[:3]})
    assert fc.eta.dims == ("run", "time", "lat", "lon")
    assert fc.eta.shape == (3, 6, 8, 9)
    np.testing.assert_array_equal(fc.time.values, runs.time.values)
    np.testing.assert_allclose(fc.lat.values, runs.lat.values)
    assert fc.eta.attrs["units"] == "m"
    np.testing.assert_allclose(fc.a.values, runs.a.values[:3])


def test_predict_points_and_off_grid_times(model, runs):
    where = xr.Dataset(coords={"lat": ("site", [41.0, 43.0]), "lon": ("site", [-159.0, -156.0])})
    t = runs.time.values[2] + np.timedelta64(30, "m")
    fc = model.predict({"a": 0.1, "b": 1.0}, times=[t], where=where)
    assert fc.eta.dims == ("time", "site") and fc.eta.shape == (1, 2)
    # eq. 17: halfway between frames 2 and 3 of the latent trajectory
    u = torch.as_tensor(
        model.schema.param_norm.normalize(np.array([[0.1, 1.0]])), dtype=torch.float32
    )
    with torch.no_grad():
        s = model.rollout(u, 4)[0]
        s_half = s[2] + 0.5 * model.dt * model.vector_field(s[2], u[0])
        pts = torch.as_tensor(
            model.schema.coord_norm.normalize(np.array([[41.0, -159.0], [43.0, -156.0]])),
            dtype=torch.float32,
        )
        expected = model.decode(s_half, pts).numpy()
    expected = model.schema.output_norm.denormalize(expected)
    np.testing.assert_allclose(fc.eta.values[0], expected[:, 0], rtol=1e-5, atol=1e-6)


def test_predict_broadcasts_dataarrays(model):
    a = xr.DataArray([0.0, 0.2], dims="member")
    b = xr.DataArray([0.8, 1.2, 1.4], dims="case")
    fc = model.predict({"a": a, "b": b})
    assert fc.eta.dims[:2] == ("member", "case")


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.floats(-0.4, 0.4), st.floats(0.6, 1.4))
def test_save_load_identical_predictions(model, tmp_path_factory, a, b):
    path = tmp_path_factory.mktemp("m") / "model.pt"
    model.save(path)
    loaded = xlevda.load_surrogate(path)
    assert isinstance(loaded, xlevda.LDNet)
    xr.testing.assert_equal(model.predict({"a": a, "b": b}), loaded.predict({"a": a, "b": b}))


def test_point_training_data():
    runs = make_runs(n_runs=6, n_frames=4)
    pts = runs.stack(point=("lat", "lon")).reset_index("point")
    cfg = xlevda.LDNetConfig(latent_dim=3, train=xlevda.TrainConfig(epochs=1))
    model = xlevda.LDNet.fit(pts, ["a", "b"], cfg, progress=False)
    assert model.schema.grid == {}
    with pytest.raises(VariableError, match="pass where="):
        model.predict({"a": 0.0, "b": 1.0})
    where = xr.Dataset(coords={"lat": ("p", [41.0]), "lon": ("p", [-158.0])})
    assert model.predict({"a": 0.0, "b": 1.0}, where=where).eta.shape == (4, 1)


def test_dask_backed_training_data_streams(runs):
    cfg = xlevda.LDNetConfig(
        latent_dim=3,
        decoder=xlevda.MLPDecoderConfig(),
        seed=1,
        train=xlevda.TrainConfig(epochs=2, seed=1),
    )
    eager = xlevda.LDNet.fit(runs, ["a", "b"], cfg, progress=False)
    lazy = xlevda.LDNet.fit(
        runs.chunk({"run": 2}), ["a", "b"], cfg, progress=False, memory_budget=0, chunk_runs=8
    )
    np.testing.assert_allclose(eager.history.train_loss, lazy.history.train_loss, rtol=1e-5)


def test_bad_predict_inputs(model, runs):
    with pytest.raises(VariableError, match=r"parameter\(s\) \['b'\] missing"):
        model.predict({"a": 0.0})
    with pytest.raises(VariableError, match=r"unknown parameter\(s\) \['c'\]"):
        model.predict({"a": 0.0, "b": 1.0, "c": 2.0})
    with pytest.raises(VariableError, match="'a' holds NaN"):
        model.predict({"a": np.nan, "b": 1.0})
    late = runs.time.values[-1] + np.timedelta64(2, "h")
    with pytest.raises(CoordinateError, match="outside the surrogate's time range"):
        model.predict({"a": 0.0, "b": 1.0}, times=[late])
    far = xr.Dataset(coords={"lat": [10.0], "lon": [-158.0]})
    with pytest.raises(CoordinateError, match="outside the surrogate's domain"):
        model.predict({"a": 0.0, "b": 1.0}, where=far)


def test_bad_fit_inputs(runs):
    with pytest.raises(ConfigError, match="params is empty"):
        xlevda.LDNet.fit(runs, [], progress=False)
    with pytest.raises(CoordinateError, match="run dimension 'member' not found"):
        xlevda.LDNet.fit(runs, ["a"], run_dim="member", progress=False)
    with pytest.raises(ConfigError, match="need at least 2"):
        xlevda.LDNet.fit(runs.isel(run=[0]), ["a"], progress=False)


def test_surrogate_file_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(SurrogateFileError):
        xlevda.load_surrogate(bad)


def test_continue_training_from_initial(model, runs):
    cfg = xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        train=xlevda.TrainConfig(epochs=1, lr=1e-12, validation_fraction=0.25),
    )
    more = xlevda.LDNet.fit(runs, ["a", "b"], cfg, progress=False, initial=model)
    # a vanishing learning rate leaves the weights where the initial model had them
    np.testing.assert_allclose(more.history.val_loss[0], min(model.history.val_loss), rtol=1e-4)
    other = runs.assign(eta=runs.eta * 2)
    with pytest.raises(ConfigError, match="another schema"):
        xlevda.LDNet.fit(other, ["a", "b"], cfg, progress=False, initial=model)


def test_forecast_carries_the_exact_training_times():
    runs = make_runs(n_runs=4, n_frames=4)
    odd = runs.time.values[0] + np.arange(4) * np.timedelta64(851_401_207_123, "ns")
    runs = runs.assign_coords(time=odd)
    cfg = xlevda.LDNetConfig(latent_dim=3, train=xlevda.TrainConfig(epochs=1))
    model = xlevda.LDNet.fit(runs, ["a", "b"], cfg, progress=False)
    fc = model.predict({"a": runs.a.values, "b": runs.b.values})
    np.testing.assert_array_equal(fc.time.values, runs.time.values)
    assert (fc.eta - runs.eta).sizes["time"] == 4  # labels align: nothing dropped


def test_predict_where_a_run_of_the_archive(model, runs):
    """``where=archive.isel(run=0)`` carries scalar ``run``, ``a`` and ``b``: the forecast's
    own parameters and ``run`` dimension replace them."""
    params = {"a": np.array([-0.2, 0.3]), "b": np.array([0.7, 1.2])}
    fc = model.predict(params, where=runs.isel(run=0))
    plain = model.predict(params, where=runs.isel(run=0).reset_coords(drop=True))
    assert fc.sizes["run"] == 2 and fc["a"].values.tolist() == [-0.2, 0.3]
    xr.testing.assert_identical(fc.eta, plain.eta)
