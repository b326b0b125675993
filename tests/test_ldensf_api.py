"""LD-EnSF through the accessor: same layout as LEVDA, same numbers as the core filter."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.conftest import make_runs
from tests.test_api import grid_obs, point_obs, target
from xlevda import LEVDA, LDEnSF, RunOptions
from xlevda._obs import obs_table
from xlevda.core.ldensf import LDEnSFConfig, ldensf_filter
from xlevda.errors import ConfigError, ObservationError
from xlevda.ldensf import observation_matrix, observation_network, train_encoder
from xlevda.methods import EnSFConfig
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder

CFG = LDEnSFConfig(members=8, ensf=EnSFConfig(steps=20), seed=3)
RUN = RunOptions(members=8, seed=3)


def method(encoder):
    return LDEnSF(encoder, ensf=EnSFConfig(steps=20))


@pytest.fixture(scope="module")
def runs():
    return make_runs(n_runs=8, n_frames=6)


@pytest.fixture(scope="module")
def model(runs):
    torch.manual_seed(0)
    cfg = xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        train=xlevda.TrainConfig(epochs=3),
    )
    return xlevda.LDNet.fit(runs, ["a", "b"], cfg, progress=False)


@pytest.fixture(scope="module")
def truth(runs):
    return runs.isel(run=0)


@pytest.fixture(scope="module")
def encoder(model, runs, truth):
    network = observation_network(point_obs(truth), model)
    return train_encoder(model, network, runs, EncoderConfig(hidden=8, epochs=5))


def test_network_of_an_observation_dataset(model, truth):
    network = observation_network(grid_obs(truth), model)
    assert network.n_points == 9 and network.channels == (0,)  # eta every 3rd of 8x9
    assert (network.first_frame, network.frame_stride) == (0, 1)
    assert observation_network(point_obs(truth), model) == network  # both obs forms agree


def test_same_layout_as_levda_and_same_numbers_as_the_core(model, truth, encoder):
    obs = point_obs(truth)
    an = target(truth).levda.assimilate(obs, model, method(encoder), run=RUN)
    lev = target(truth).levda.assimilate(obs, model, LEVDA(window=2), run=RunOptions(members=8))
    for name in ("eta", "u", "a", "b", "latent_state"):
        assert an[name].dims == lev[name].dims
    assert an.attrs["method"] == "LD-EnSF" and an.attrs["title"] == "LD-EnSF analysis ensemble"
    assert json.loads(an.attrs["method_config"])["type"] == "LDEnSF"
    assert json.loads(an.attrs["method_config"])["encoder"]["type"] == "ObservationEncoder"
    # window 0 holds the members at the shifted start, then one window per observed frame
    assert an.window_anchor_step.values.tolist() == [-1, 0, 1, 2, 3, 4, 5]
    assert an.window_analysed.values.tolist() == [0] + [1] * 6
    assert an.window_n_obs.values.tolist() == [0] + [9] * 6
    assert np.isfinite(an.eta.values).all()

    # the windows, one dask task each, reproduce the core filter exactly
    table = obs_table(obs, model.schema)
    y = torch.as_tensor(observation_matrix(table, encoder.network), dtype=torch.float32)
    res = ldensf_filter(model, encoder, encoder.network, y, CFG, n_frames=6)
    np.testing.assert_array_equal(an.latent_state.values, res.s.numpy())
    u = model.schema.param_norm.denormalize(res.u.double().numpy())
    np.testing.assert_array_equal(an.a.values, u[..., 0])
    for name in ("forecast_spread", "analysis_spread", "forecast_misfit", "analysis_misfit"):
        np.testing.assert_array_equal(an[f"window_{name}"].values[1:], getattr(res, name).numpy())
        assert np.isnan(an[f"window_{name}"].values[0])


def test_frames_between_and_after_observations_are_forecasts(model, runs, truth):
    """Observed frames 1 and 3 of 6: window 0 supplies frame 0, each analysis the next frames."""
    obs = point_obs(truth.isel(time=[1, 3]))
    network = observation_network(obs, model)
    sparse = train_encoder(model, network, runs, EncoderConfig(hidden=8, epochs=2))
    an = target(truth).levda.assimilate(obs, model, method(sparse), run=RUN)
    assert an.window_anchor_step.values.tolist() == [-1, 1, 3]
    assert an.window_index.values.tolist() == [0, 1, 1, 2, 2, 2]
    y = torch.as_tensor(observation_matrix(obs_table(obs, model.schema), network))
    res = ldensf_filter(model, sparse, network, y.float(), CFG, n_frames=6)
    np.testing.assert_array_equal(an.latent_state.values, res.s.numpy())
    np.testing.assert_array_equal(an.window_analysis_spread.values[1:], res.analysis_spread)


def test_saved_encoder_gives_the_same_analysis(model, truth, encoder, tmp_path):
    encoder.save(tmp_path / "enc.pt")
    again = ObservationEncoder.load(tmp_path / "enc.pt", model, encoder.network)
    obs = point_obs(truth)
    a = target(truth).levda.assimilate(obs, model, method(encoder), run=RUN)
    b = target(truth).levda.assimilate(obs, model, method(again), run=RUN)
    np.testing.assert_array_equal(a.latent_state.values, b.latent_state.values)


def test_bad_method_inputs(model, truth, encoder):
    obs, where = point_obs(truth), target(truth)
    with pytest.raises(ConfigError, match="LDEnSF needs encoder="):
        LDEnSF(None)
    with pytest.raises(ConfigError, match=r"LDEnSFConfig.obs_scale .* got inf"):
        LDEnSF(encoder, obs_scale=float("inf"))
    with pytest.raises(ConfigError, match=r"method must be an xlevda method"):
        where.levda.assimilate(obs, model, {"members": 4})
    with pytest.raises(ConfigError, match="background= is not used by LD-EnSF"):
        where.levda.assimilate(obs, model, method(encoder), run=RUN, background={"a": [0.0]})


def test_observations_must_be_the_encoders_network(model, truth, encoder):
    where = target(truth)
    other = truth[["eta"]].isel(lat=slice(None, None, 2), lon=slice(None, None, 2))
    with pytest.raises(ObservationError, match="is not a point of the encoder's network"):
        where.levda.assimilate(
            other.assign(eta_std=other.eta * 0 + 0.05), model, method(encoder), run=RUN
        )
    sparse = point_obs(truth.isel(time=[0, 2, 4]))
    with pytest.raises(ObservationError, match=r"frames \[0, 2, 4\], but the encoder"):
        where.levda.assimilate(sparse, model, method(encoder), run=RUN)
    holes = point_obs(truth).isel(obs=slice(1, None))
    with pytest.raises(ObservationError, match="network point 0 channel 0 is missing"):
        where.levda.assimilate(holes, model, method(encoder), run=RUN)
    between = point_obs(truth)
    between = between.assign_coords(time=between.time + np.timedelta64(30, "m"))
    with pytest.raises(ObservationError, match="fall between the surrogate's frames"):
        observation_network(between.where(between.time < between.time.max(), drop=True), model)


def test_times_within_rounding_of_a_frame_are_on_it(model, truth):
    obs = point_obs(truth.isel(time=slice(1, None)))
    for shift in (-1, 1):  # a millisecond early or late: rounding, not another frame
        moved = obs.assign_coords(time=obs.time + np.timedelta64(shift, "ms"))
        assert observation_network(moved, model).first_frame == 1


def test_no_errors_needed_and_cases_get_their_own_seeds(model, truth, encoder):
    obs = point_obs(truth).drop_vars("eta_std")  # LD-EnSF uses the encoder's error
    both = xr.concat([obs, obs], "case")
    an = target(truth).levda.assimilate(both, model, method(encoder), run=RUN)
    a, b = an.latent_state.isel(case=0).values, an.latent_state.isel(case=1).values
    assert not np.allclose(a, b)  # independent cases: independent ensembles and noise
