"""LDNet with learned initial states on xarray data: fit, encode_frame, predict(initial_latent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.conftest import make_runs
from xlevda._convert import build_schema
from xlevda._frames import DatasetFrameSource
from xlevda.errors import ConfigError, VariableError
from xlevda.surrogates.config import LearnedInitialState


@pytest.fixture(scope="module")
def runs():
    # the bump's offset ``a`` is a hidden initial condition: only ``b`` is a parameter
    return make_runs(n_runs=8, n_frames=4)


def _config(**init) -> xlevda.LDNetConfig:
    return xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        initial_state=LearnedInitialState(**init),
        train=xlevda.TrainConfig(epochs=3, validation_fraction=0.25, points_per_frame=None),
    )


@pytest.fixture(scope="module")
def model(runs):
    return xlevda.LDNet.fit(runs, ["b"], _config(), progress=False)


def test_fit_sizes_the_table_to_the_training_runs(model, runs):
    kept = model.metadata["initial_state_runs"]
    assert model.initial_states.shape == (6, 4)
    assert len(kept) == 6 and not set(kept) & set(model.quality.heldout_runs)
    assert sorted(kept + list(model.quality.heldout_runs)) == list(range(8))
    assert len(model.quality.frame_errors[0]) == 4
    with pytest.raises(ConfigError, match="n_runs=5 differs from the 6 training runs"):
        xlevda.LDNet.fit(runs, ["b"], _config(n_runs=5), progress=False)


def test_encode_then_predict(model, runs):
    first = runs.isel(run=[0, 3], time=0)
    s0 = model.encode_frame(first)
    assert s0.dims == ("run", "latent") and s0.shape == (2, 4)
    np.testing.assert_array_equal(s0.run.values, [0, 3])
    fc = model.predict({"b": runs.b.values[[0, 3]]}, initial_latent=s0)
    assert fc.eta.dims == ("run", "time", "lat", "lon") and fc.eta.shape == (2, 4, 8, 9)
    # frame 0 decodes the fitted state itself
    pts = torch.as_tensor(
        model.schema.embed(
            np.stack(np.meshgrid(runs.lat, runs.lon, indexing="ij"), -1).reshape(-1, 2)
        )[0],
        dtype=torch.float32,
    )
    with torch.no_grad():
        dec = model.decode(torch.as_tensor(s0.values, dtype=torch.float32), pts).double().numpy()
    eta0 = model.schema.output_norm.denormalize(dec)[..., 0].reshape(2, 8, 9)
    np.testing.assert_allclose(fc.eta.isel(time=0).values, eta0, rtol=1e-5, atol=1e-6)


def test_predict_broadcasts_a_latent_array_against_parameters(model, runs):
    s0 = model.encode_frame(runs.isel(run=0, time=0))
    assert s0.dims == ("latent",)
    fc = model.predict({"b": [0.6, 1.2, 1.4]}, initial_latent=s0.values)
    assert fc.eta.shape == (3, 4, 8, 9)


def test_encode_frame_leaves_nan_cells_out(model, runs):
    first = runs.isel(run=[1], time=0)
    holes = first.copy(deep=True)
    holes["eta"][0, :2, :] = np.nan
    a = model.encode_frame(first).values
    b = model.encode_frame(holes).values
    assert np.isfinite(b).all() and a.shape == b.shape


def test_bad_inputs_name_what_is_wrong(model, runs):
    with pytest.raises(VariableError, match="initial_latent is required"):
        model.predict({"b": 1.0})
    with pytest.raises(VariableError, match="'latent' dimension of size latent_dim=4"):
        model.predict({"b": 1.0}, initial_latent=np.zeros(3))
    with pytest.raises(VariableError, match="initial_latent holds NaN"):
        model.predict({"b": 1.0}, initial_latent=np.full(4, np.nan))
    with pytest.raises(VariableError, match="none of the surrogate's variables"):
        model.encode_frame(runs.isel(time=0).rename({"eta": "h", "u": "w"}))
    with pytest.raises(VariableError, match="field 'u' has dims"):
        bad = runs.isel(run=[0], time=0).copy()
        bad["u"] = bad["u"].isel(run=0)
        model.encode_frame(bad)
    with pytest.raises(VariableError, match="2 times"):
        model.encode_frame(runs.isel(run=[0], time=[0, 1]))
    with pytest.raises(VariableError, match="field 'eta' is NaN everywhere"):
        model.encode_frame(runs.isel(run=[0], time=0).where(lambda d: d.eta > 1e9))
    plain = xlevda.LDNet(
        xlevda.LDNetConfig(latent_dim=4, decoder=xlevda.MLPDecoderConfig()), model.schema
    )
    with pytest.raises(ConfigError, match=r"LDNetConfig\.initial_state"):
        plain.encode_frame(runs.isel(time=0))
    with pytest.raises(ConfigError, match="leave initial_latent None"):
        plain.predict({"b": 1.0}, initial_latent=np.zeros(4))


def test_save_load_keeps_table_and_forecast(model, runs, tmp_path):
    model.save(tmp_path / "m.pt")
    loaded = xlevda.LDNet.load(tmp_path / "m.pt")
    s0 = model.encode_frame(runs.isel(run=[2], time=0))
    a = model.predict({"b": runs.b.values[[2]]}, initial_latent=s0)
    b = loaded.predict({"b": runs.b.values[[2]]}, initial_latent=s0)
    xr.testing.assert_identical(a, b)
    assert loaded.metadata["initial_state_runs"] == model.metadata["initial_state_runs"]


def test_streamed_batches_carry_the_source_run_index(runs):
    """Chunked reading gives each batch the same run indices as in-memory reading."""
    schema = build_schema(runs, ["b"])
    idx = np.array([6, 1, 3, 0, 7])
    mem = DatasetFrameSource(runs, schema, idx)
    streamed = DatasetFrameSource(runs, schema, idx, chunk_runs=2, memory_budget=0)
    full = mem._load(idx).values  # the sorted runs, in source order
    for src in (mem, streamed):
        batches = list(src.batches(2, None, torch.Generator().manual_seed(0), True))
        got = torch.cat([b.runs for b in batches])
        assert sorted(got.tolist()) == list(range(5))
        for b in batches:
            torch.testing.assert_close(b.values, full[b.runs])
