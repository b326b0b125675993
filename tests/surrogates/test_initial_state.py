"""Learned per-run initial states (LearnedInitialState): config, training, fitting, files."""

from __future__ import annotations

import math

import pytest
import torch

from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.config import (
    LDNetConfig,
    LearnedInitialState,
    LinearDynamicsConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from xlevda.surrogates.decoder_configs import (
    CosineDecoderConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
)
from xlevda.surrogates.frames import TensorFrameSource
from xlevda.surrogates.initial_state import fit_initial_state, nearest_table_state
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.training import evaluate, train

N_RUNS, N_FRAMES, N_PTS = 6, 4, 12


def _archive() -> TensorFrameSource:
    """Runs that share their parameter and differ only in initial amplitude:
    ``x_r(t, xi) = a_r cos(pi xi) exp(-t)``; no parameter-only model can tell them apart."""
    amp = torch.linspace(-1.0, 1.0, N_RUNS)
    xi = torch.linspace(-1.0, 1.0, N_PTS)
    t = torch.arange(N_FRAMES) / N_FRAMES
    values = amp[:, None, None] * torch.cos(math.pi * xi) * torch.exp(-t)[:, None]
    return TensorFrameSource(torch.zeros(N_RUNS, 1), xi[:, None], values[..., None])


def _config(learned: bool, epochs: int = 60) -> LDNetConfig:
    return LDNetConfig(
        latent_dim=3,
        dynamics_width=16,
        dynamics_depth=2,
        decoder=SeparableDecoderConfig(n_basis=4, basis_width=16, coef_width=16, n_fourier=8),
        initial_state=LearnedInitialState(n_runs=N_RUNS, lr_factor=10.0) if learned else None,
        train=TrainConfig(epochs=epochs, batch_size=3, points_per_frame=None, lr=1e-2),
    )


def _schema() -> SurrogateSchema:
    return SurrogateSchema.minimal(N_FRAMES, coords=("x",))


@pytest.fixture(scope="module")
def trained() -> LDNetModel:
    model = LDNetModel(_config(True), _schema())
    train(model, _archive(), None, progress=False)
    return model


def test_config_validates_and_round_trips():
    cfg = _config(True)
    assert config_from_dict(config_to_dict(cfg)) == cfg
    old = config_to_dict(LDNetConfig(decoder=MLPDecoderConfig()))
    del old["initial_state"]  # a file written before the option existed
    assert config_from_dict(old).initial_state is None
    with pytest.raises(ConfigError, match=r"LearnedInitialState\.regularization"):
        LearnedInitialState(regularization=-1.0)
    with pytest.raises(ConfigError, match=r"LearnedInitialState\.n_runs"):
        LearnedInitialState(n_runs=0)
    with pytest.raises(ConfigError, match=r"LearnedInitialState\.lr_factor"):
        LearnedInitialState(lr_factor=0.0)
    with pytest.raises(ConfigError, match=r"LDNetConfig\.initial_state must be None or"):
        LDNetConfig(initial_state={"n_runs": 3})
    with pytest.raises(ConfigError, match=r"LDNetConfig\.initial_state must be None with"):
        LDNetConfig(
            latent_dim=3,
            learnable_dt=False,
            decoder=CosineDecoderConfig(),
            dynamics=LinearDynamicsConfig(n_centres=2),
            initial_state=LearnedInitialState(n_runs=2),
        )
    with pytest.raises(ConfigError, match="n_runs is None"):
        LDNetModel(
            LDNetConfig(initial_state=LearnedInitialState(), decoder=MLPDecoderConfig()), _schema()
        )
    with pytest.raises(ConfigError, match=r"give a neural decoder, e\.g\. decoder=MLPDecoder"):
        LDNetConfig(initial_state=LearnedInitialState())  # the default is the closed form


def test_table_shape_and_rollout_starts_there():
    model = LDNetModel(_config(True), _schema())
    assert model.initial_states.shape == (N_RUNS, 3)
    s0 = model.initial_states[:2].detach()
    traj = model.rollout(torch.zeros(2, 1), N_FRAMES, s0)
    assert traj.shape == (2, N_FRAMES, 3)
    torch.testing.assert_close(traj[:, 0], s0, rtol=0, atol=0)
    step = s0 + model.dt * model.vector_field(s0, torch.zeros(2, 1))
    torch.testing.assert_close(traj[:, 1], step.detach())


def test_learned_states_train_and_beat_parameters_only(trained):
    hist = trained.history
    assert hist.train_loss[-1] < 0.2 * hist.train_loss[0]
    baseline = LDNetModel(_config(False), _schema())
    train(baseline, _archive(), None, progress=False)
    # the parameter-only model gives every run one trajectory: its loss stays near the
    # spread of the runs about their mean; the learned states separate them
    assert hist.train_loss[-1] < 0.25 * baseline.history.train_loss[-1]


def test_table_has_its_own_learning_rate_and_no_weight_decay(trained):
    model = LDNetModel(_config(True, epochs=1), _schema())
    before = model.initial_states.detach().clone()
    cfg = TrainConfig(epochs=1, batch_size=N_RUNS, points_per_frame=None, lr=1e-3)
    train(model, _archive(), None, cfg, progress=False)
    # one Adam step moves every coordinate by about lr * lr_factor = 1e-2
    moved = (model.initial_states.detach() - before).abs()
    torch.testing.assert_close(moved, torch.full_like(moved, 1e-2), rtol=0.05, atol=1e-4)


def test_fitted_state_reproduces_training_first_frame(trained):
    src = _archive()
    points = src.points
    first = src.values[:, 0]
    with torch.no_grad():
        prepared = trained.prepare_points(points)

        def cost(s):
            return (trained.decode_prepared(s, prepared) - first).square().sum((1, 2))

        table_cost = cost(trained.initial_states)
        zero_cost = cost(torch.zeros_like(trained.initial_states))
    s0 = fit_initial_state(trained, first, points)
    with torch.no_grad():
        fitted_cost = cost(s0)
    # Levenberg-Marquardt accepts only decreasing steps from the nearest table entry,
    # whose cost is at most that of the run's own entry
    assert (fitted_cost <= table_cost * (1 + 1e-5) + 1e-7).all()
    assert fitted_cost.sum() < 0.2 * zero_cost.sum()


def test_nearest_table_state_picks_the_entry_of_each_field():
    model = LDNetModel(_config(True), _schema())
    with torch.no_grad():
        model.initial_states.copy_(
            torch.randn(N_RUNS, 3, generator=torch.Generator().manual_seed(1))
        )
        pts = _archive().points
        prepared = model.prepare_points(pts)
        fields = model.decode_prepared(model.initial_states[[4, 1]], prepared)
        start = nearest_table_state(model, fields, prepared)
    torch.testing.assert_close(start, model.initial_states[[4, 1]].detach())


def test_evaluation_fits_the_first_frame(trained):
    ev = evaluate(trained, _archive())
    assert ev.rel_rmse < 0.3


def test_bad_inputs_raise():
    model = LDNetModel(_config(True), _schema())
    u = torch.zeros(2, 1)
    with pytest.raises(ShapeError, match="s0"):
        model.rollout(u, 3)
    with pytest.raises(ShapeError, match="s0 must have shape"):
        model.rollout(u, 3, torch.zeros(2, 5))
    plain = LDNetModel(_config(False), _schema())
    with pytest.raises(ShapeError, match="leave s0 None"):
        plain.rollout(u, 3, torch.zeros(2, 3))
    pts = _archive().points
    with pytest.raises(ShapeError, match="learned initial states"):
        fit_initial_state(plain, torch.zeros(1, N_PTS, 1), pts)
    with pytest.raises(ShapeError, match="values"):
        fit_initial_state(model, torch.zeros(1, N_PTS + 1, 1), pts)
    with pytest.raises(VariableError, match="NaN"):
        fit_initial_state(model, torch.full((1, N_PTS, 1), math.nan), pts)
    too_many = TensorFrameSource(
        torch.zeros(N_RUNS + 1, 1), pts, torch.zeros(N_RUNS + 1, 2, N_PTS, 1)
    )
    with pytest.raises(ShapeError, match=r"LearnedInitialState\.n_runs"):
        train(model, too_many, None, TrainConfig(epochs=1, batch_size=N_RUNS + 1), progress=False)


def test_save_load_round_trip(trained, tmp_path):
    path = tmp_path / "m.pt"
    trained.save(path)
    loaded = LDNetModel.load(path)
    assert loaded.config == trained.config
    torch.testing.assert_close(loaded.initial_states, trained.initial_states, rtol=0, atol=0)
    src = _archive()
    s0 = fit_initial_state(trained, src.values[:, 0], src.points)
    with torch.no_grad():
        a = trained(src.params, src.points, N_FRAMES, s0)
        b = loaded(src.params, src.points, N_FRAMES, s0)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_old_files_load_unchanged(tmp_path):
    """A file whose config lacks ``initial_state`` (written before the option) loads as
    a parameter-only model with the same weights."""
    model = LDNetModel(_config(False), _schema())
    path = tmp_path / "old.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["config"]["initial_state"], payload["sha256"]  # older files: no checksum
    torch.save(payload, path)
    loaded = LDNetModel.load(path)
    assert loaded.config.initial_state is None and not loaded.learns_initial_states
    assert "initial_states" not in loaded.state_dict()
    u = torch.zeros(1, 1)
    torch.testing.assert_close(loaded.rollout(u, 3), model.rollout(u, 3), rtol=0, atol=0)
