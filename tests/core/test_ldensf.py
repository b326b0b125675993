"""LD-EnSF: latent forecast, pseudo-observations from the encoder, EnSF analyses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import xlevda.core.ldensf as ldensf_module
from tests.surrogates.test_encoder import NETWORK, SMALL, linear_surrogate
from xlevda.core.ensf import EnSFConfig, TweedieLikelihood
from xlevda.core.ldensf import (
    LDEnSFConfig,
    ldensf_filter,
    ldensf_start,
    ldensf_step,
    pseudo_observations,
)
from xlevda.core.prior import prior_params
from xlevda.errors import ConfigError, ObservationError, ShapeError, SurrogateFileError
from xlevda.surrogates.encoder import EncoderConfig
from xlevda.surrogates.encoder_training import (
    fit_encoder,
    latent_targets,
    surrogate_histories,
)

F64 = torch.float64
N_OBS = 12
FAST = LDEnSFConfig(members=16, ensf=EnSFConfig(steps=20))


@pytest.fixture(scope="module")
def setup():
    """A trained encoder, and truth runs observed with 5 % noise."""
    surrogate = linear_surrogate()
    y, u = surrogate_histories(surrogate, NETWORK, n_runs=60, n_obs=N_OBS, seed=1)
    encoder = fit_encoder(surrogate, NETWORK, y, u, SMALL)
    y_true, u_true = surrogate_histories(surrogate, NETWORK, n_runs=4, n_obs=N_OBS, seed=11)
    channel_std = y.unflatten(-1, (3, 2)).reshape(-1, 2).std(0).repeat(3)
    gen = torch.Generator().manual_seed(5)
    obs = y_true + 0.05 * channel_std * torch.randn(y_true.shape, generator=gen, dtype=F64)
    z_true = latent_targets(surrogate, NETWORK, u_true, N_OBS)
    return surrogate, encoder, obs, z_true


def _weak_encoder(surrogate, network, n_obs):
    """An encoder trained for one epoch: enough for checks that do not need accuracy."""
    y, u = surrogate_histories(surrogate, network, n_runs=4, n_obs=n_obs, seed=0)
    return fit_encoder(surrogate, network, y, u, EncoderConfig(hidden=4, epochs=1)), y


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"members": 1}, r"LDEnSFConfig.members must be an integer >= 2, got 1"),
        ({"members": 2.0}, r"LDEnSFConfig.members .* got 2.0"),
        ({"ensf": {"steps": 10}}, r"LDEnSFConfig.ensf must be an EnSFConfig, got dict"),
        ({"prior_range": ((1.0, 0.0),)}, r"LDEnSFConfig.prior_range .* got \(\(1.0, 0.0\),\)"),
        ({"prior_range": (1.0, 2.0)}, r"LDEnSFConfig.prior_range .* got \(1.0, 2.0\)"),
        ({"obs_error_factor": 0.0}, r"LDEnSFConfig.obs_error_factor must be .* > 0, got 0.0"),
        ({"obs_scale": float("inf")}, r"LDEnSFConfig.obs_scale .* got inf"),
        ({"seed": -1}, r"LDEnSFConfig.seed must be an integer >= 0, got -1"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LDEnSFConfig(**kwargs)


def _errors(surrogate, encoder, obs, z_true, config):
    """Relative RMSE per observation of the analysis mean, the pseudo-observations and the
    free forecast (the same initial ensemble rolled out without assimilation): (3, T)."""
    unit = encoder.out_std.to(F64)
    out = ldensf_filter(surrogate, encoder, NETWORK, obs, config)
    u0 = prior_params(surrogate.schema, config.members, torch.Generator().manual_seed(config.seed))
    estimates = (
        torch.cat([out.s, out.u], -1).mean(1),
        out.pseudo_obs,
        latent_targets(surrogate, NETWORK, u0.to(F64), obs.shape[0]).mean(0),
    )
    return torch.stack([((z - z_true) / unit).square().mean(-1).sqrt() for z in estimates])


def test_filter_beats_the_free_forecast_and_the_encoder_alone(setup):
    surrogate, encoder, obs, z_true = setup
    config = LDEnSFConfig(members=32, ensf=EnSFConfig(steps=50))
    errors = torch.stack(
        [
            _errors(surrogate, encoder, obs[r], z_true[r], dataclasses.replace(config, seed=r))
            for r in range(obs.shape[0])
        ]
    )  # (runs, 3, T)
    analysis, pseudo, free = errors[:, :, N_OBS // 2 :].mean((0, 2))
    assert analysis < 0.8 * pseudo and analysis < 0.1 * free, errors.mean(0)


def test_filter_with_tweedie_likelihood(setup):
    surrogate, encoder, obs, z_true = setup
    config = LDEnSFConfig(members=16, ensf=EnSFConfig(steps=20, damping=TweedieLikelihood()))
    analysis, pseudo, free = _errors(surrogate, encoder, obs[0, :6], z_true[0, :6], config)
    assert torch.isfinite(analysis).all()
    assert analysis[3:].mean() < 0.2 * free[3:].mean(), (analysis, pseudo, free)


def test_result_shapes_and_diagnostics(setup):
    surrogate, encoder, obs, _ = setup
    out = ldensf_filter(surrogate, encoder, NETWORK, obs[0], FAST, n_frames=N_OBS + 3)
    assert out.s.shape == (N_OBS + 3, 16, 3) and out.u.shape == (N_OBS + 3, 16, 2)
    assert out.s.dtype == F64
    assert out.analysed.tolist() == [True] * N_OBS + [False] * 3
    assert out.obs_frames.tolist() == list(range(N_OBS))
    assert out.pseudo_obs.shape == out.pseudo_obs_std.shape == (N_OBS, 5)
    torch.testing.assert_close(out.pseudo_obs_std, encoder.error_std.to(F64))
    for name in ("forecast_spread", "analysis_spread", "forecast_misfit", "analysis_misfit"):
        value = getattr(out, name)
        assert value.shape == (N_OBS,) and torch.isfinite(value).all() and (value >= 0).all()
    assert out.replaced.tolist() == [0] * N_OBS and (out.seconds > 0).all()
    # the initial ensemble spans the prior; the first analysis narrows the spread
    assert out.analysis_spread[0] < out.forecast_spread[0]
    wider = dataclasses.replace(FAST, obs_error_factor=2.5)
    out = ldensf_filter(surrogate, encoder, NETWORK, obs[0, :2], wider)
    torch.testing.assert_close(out.pseudo_obs_std, 2.5 * encoder.error_std[:2].to(F64))


def test_frames_without_observations_are_euler_forecasts_of_each_member():
    surrogate = linear_surrogate()
    net = dataclasses.replace(NETWORK, first_frame=1, frame_stride=3)
    encoder, y = _weak_encoder(surrogate, net, 3)
    out = ldensf_filter(surrogate, encoder, net, y[0], FAST, n_frames=10)
    assert out.analysed.tolist() == [k in (1, 4, 7) for k in range(10)]
    for k in range(10):
        if out.analysed[k]:
            continue
        before = torch.zeros(16, 3, dtype=F64) if k == 0 else out.s[k - 1]
        u = out.u[k - 1] if k else out.u[0]
        for m in range(16):  # per-member reference
            want = before[m] + 0.1 * (surrogate.A @ before[m] + surrogate.B @ u[m])
            torch.testing.assert_close(out.s[k, m], want)
        torch.testing.assert_close(out.u[k], u, rtol=0, atol=0)
    # frame 0 is the first Euler step from s_-1 = 0 with the prior parameters
    u0 = prior_params(surrogate.schema, 16, torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(out.u[0], u0)


def test_same_seed_same_result_other_seed_other_result(setup):
    surrogate, encoder, obs, _ = setup
    a = ldensf_filter(surrogate, encoder, NETWORK, obs[1], FAST)
    b = ldensf_filter(surrogate, encoder, NETWORK, obs[1], FAST)
    c = ldensf_filter(surrogate, encoder, NETWORK, obs[1], dataclasses.replace(FAST, seed=1))
    assert torch.equal(a.s, b.s) and torch.equal(a.u, b.u)
    assert not torch.equal(a.s, c.s)


def test_steps_with_the_generator_state_handed_on_reproduce_the_filter():
    """What the method's windows do: one step each, the generator rebuilt from its state."""
    surrogate = linear_surrogate()
    net = dataclasses.replace(NETWORK, first_frame=1, frame_stride=2)
    encoder, y = _weak_encoder(surrogate, net, 4)
    out = ldensf_filter(surrogate, encoder, net, y[0], FAST, n_frames=9)
    to = {"dtype": F64, "device": "cpu"}
    pseudo = pseudo_observations(encoder, y[0], FAST.obs_error_factor, **to)
    z, gen = ldensf_start(surrogate, FAST, **to)
    frame = -1
    for j, k in enumerate(out.obs_frames.tolist()):
        state = gen.get_state().numpy()  # what a window hands to the next
        gen = torch.Generator()
        gen.set_state(torch.from_numpy(state))
        forecasts, z, diag = ldensf_step(surrogate, z, k - frame, pseudo, j, FAST, gen)
        assert forecasts.shape == (k - frame, 16, 5)
        assert torch.equal(forecasts[:-1], torch.cat([out.s, out.u], -1)[frame + 1 : k])
        assert torch.equal(z, torch.cat([out.s[k], out.u[k]], -1))
        assert diag[0] == out.forecast_spread[j] and diag[3] == out.analysis_misfit[j]
        frame = k


def test_non_finite_analysis_members_keep_their_forecast(setup, monkeypatch):
    surrogate, encoder, obs, _ = setup
    real = ldensf_module.ensf_analysis

    def first_member_fails(prior, score, config, generator):
        out = real(prior, score, config, generator)
        out[0] = torch.nan
        return out

    monkeypatch.setattr(ldensf_module, "ensf_analysis", first_member_fails)
    out = ldensf_filter(surrogate, encoder, NETWORK, obs[0, :3], FAST)
    assert out.replaced.tolist() == [1, 1, 1]
    assert torch.isfinite(out.s).all() and torch.isfinite(out.u).all()
    # member 0 never had an analysis: its parameters are still the prior draw
    u0 = prior_params(surrogate.schema, 16, torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(out.u[:, 0], u0[0].expand(3, 2), rtol=0, atol=0)


def test_wrong_network_surrogate_or_observations_raise(setup):
    surrogate, encoder, obs, _ = setup
    moved = dataclasses.replace(NETWORK, channels=(0,))
    with pytest.raises(ObservationError, match=r"another observation network: channels"):
        ldensf_filter(surrogate, encoder, moved, obs[0][:, :3], FAST)
    with pytest.raises(SurrogateFileError, match=r"another surrogate: latent trajectories"):
        ldensf_filter(linear_surrogate(seed=3), encoder, NETWORK, obs[0], FAST)
    with pytest.raises(ShapeError, match=r"observations must have shape \(T >= 1, P \* C = 6\)"):
        ldensf_filter(surrogate, encoder, NETWORK, obs[0, :, :5], FAST)
    with pytest.raises(ShapeError, match=r"n_frames must be an integer >= 12 .* got 11"):
        ldensf_filter(surrogate, encoder, NETWORK, obs[0], FAST, n_frames=11)
    with pytest.raises(ConfigError, match=r"config must be an LDEnSFConfig, got EnSFConfig"):
        ldensf_filter(surrogate, encoder, NETWORK, obs[0], EnSFConfig())


def test_encoder_without_error_estimate_is_rejected():
    surrogate = linear_surrogate()
    encoder, y = _weak_encoder(surrogate, NETWORK, 2)
    encoder.error_std = torch.zeros_like(encoder.error_std)
    with pytest.raises(ConfigError, match=r"encoder.error_std must be positive"):
        ldensf_filter(surrogate, encoder, NETWORK, y[0], FAST)
