"""Frame sources and the training loop."""

from __future__ import annotations

import math

import pytest
import torch

from xlevda.errors import ShapeError, VariableError
from xlevda.surrogates.config import LDNetConfig, TrainConfig
from xlevda.surrogates.decoder_configs import MLPDecoderConfig, SeparableDecoderConfig
from xlevda.surrogates.frames import FrameBatch, FrameSource, TensorFrameSource
from xlevda.surrogates.history import TrainingHistory
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.schema import Affine, SurrogateSchema
from xlevda.surrogates.training import evaluate, scheduled_lr, train


def make_schema(n_frames: int = 10) -> SurrogateSchema:
    return SurrogateSchema(
        variables=("h",),
        variable_attrs=({},),
        output_norm=Affine((0.0,), (1.0,)),
        coords=("x", "y"),
        coord_attrs=({}, {}),
        coord_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        params=("a", "b"),
        param_attrs=({}, {}),
        param_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        param_range=((-1.0, 1.0), (-1.0, 1.0)),
        time_origin="0",
        time_step=1.0,
        time_units="s",
        time_is_datetime=False,
        n_frames=n_frames,
    )


def waves(n_runs: int, seed: int, n_frames: int = 10, n: int = 16) -> TensorFrameSource:
    """Two parametrized modes on an n x n grid: a standing wave and a growing ridge."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n_runs, 2, generator=gen) * 2 - 1
    x = torch.linspace(-1, 1, n)
    pts = torch.stack(torch.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    t = torch.linspace(0, 1, n_frames)[None, :, None]
    a, b = u[:, 0, None, None], u[:, 1, None, None]
    X, Y = pts[None, None, :, 0], pts[None, None, :, 1]
    vals = (1 + 0.5 * a) * torch.sin(torch.pi * X) * torch.cos(2 * t) + b * t * torch.cos(
        torch.pi * Y
    )
    return TensorFrameSource(u, pts, vals[..., None])


def small_config(decoder, **train_kw) -> LDNetConfig:
    train_cfg = {"epochs": 60, "batch_size": 4, "points_per_frame": 64, "lr": 1e-2} | train_kw
    return LDNetConfig(
        latent_dim=4,
        dynamics_width=16,
        dynamics_depth=2,
        decoder=decoder,
        train=TrainConfig(**train_cfg),
    )


MLP = MLPDecoderConfig(width=32, depth=2, n_fourier=16)
SEP = SeparableDecoderConfig(
    n_basis=16, basis_width=32, basis_depth=2, coef_width=32, coef_depth=2, n_fourier=16
)

# ----------------------------------------------------------------------------- sources


def test_tensor_source_samples_without_replacement_per_frame():
    n_runs, n_frames, n_pts = 5, 3, 20
    pts = torch.randn(n_pts, 2)
    params = torch.randn(n_runs, 2)
    # values encode (run, frame, point) so that every gathered target can be checked
    values = (
        100 * torch.arange(n_runs)[:, None, None]
        + 10 * torch.arange(n_frames)[None, :, None]
        + pts[None, None, :, 0] * 0
        + torch.arange(n_pts)[None, None, :] / 100
    )[..., None].float()
    src = TensorFrameSource(params, pts, values)
    assert isinstance(src, FrameSource)
    assert (src.n_runs, src.n_frames, src.n_points) == (5, 3, 20)
    gen = torch.Generator().manual_seed(0)
    batches = list(src.batches(2, 6, gen, shuffle=True))
    assert [b.params.shape[0] for b in batches] == [2, 2, 1]
    seen = []
    for b in batches:
        assert b.points.shape == (n_frames, 6, 2) and b.values.shape == (b.params.shape[0], 3, 6, 1)
        run = torch.round(b.values[:, 0, 0, 0] / 100).long()
        torch.testing.assert_close(b.params, params[run])
        point = torch.round((b.values[..., 0] % 10) * 100).long()  # (B, T, P)
        assert (point == point[:1]).all(), "the runs of a batch share their points"
        for t in range(n_frames):
            assert len(set(point[0, t].tolist())) == 6, "no point twice in a frame"
            torch.testing.assert_close(b.points[t], pts[point[0, t]])
        assert not torch.equal(point[0, 0], point[0, 1]), "frames get different points"
        frame = torch.round((b.values[..., 0] % 100) / 10 - 0.4).long()
        assert (frame == torch.arange(n_frames)[None, :, None]).all()
        seen += run.tolist()
    assert sorted(seen) == list(range(n_runs))
    # same generator seed, same batches
    again = list(src.batches(2, 6, torch.Generator().manual_seed(0), shuffle=True))
    assert all(torch.equal(a.values, b.values) for a, b in zip(batches, again, strict=True))


def test_tensor_source_all_points():
    src = waves(3, 0, n_frames=2, n=4)
    for ppf in (None, 16, 100):
        (batch,) = src.batches(8, ppf, torch.Generator(), shuffle=False)
        assert batch.points.shape == (16, 2) and torch.equal(batch.values, src.values)


def test_tensor_source_errors():
    with pytest.raises(ShapeError, match=r"needs params \(N, d_u\)"):
        TensorFrameSource(torch.zeros(2), torch.zeros(3, 2), torch.zeros(2, 1, 3, 1))
    with pytest.raises(ShapeError, match=r"values \(2, 1, 4, 1\) .* disagree"):
        TensorFrameSource(torch.zeros(2, 2), torch.zeros(3, 2), torch.zeros(2, 1, 4, 1))
    with pytest.raises(ShapeError, match="empty dimension"):
        TensorFrameSource(torch.zeros(0, 2), torch.zeros(3, 2), torch.zeros(0, 1, 3, 1))
    values = torch.zeros(2, 1, 3, 1)
    values[1, 0, 2] = math.nan
    with pytest.raises(VariableError, match="values holds 1 NaN or infinite values"):
        TensorFrameSource(torch.zeros(2, 2), torch.zeros(3, 2), values)


def test_scheduled_lr():
    cfg = TrainConfig(epochs=11, lr=1.0, lr_schedule="cosine", lr_min_factor=0.1)
    assert scheduled_lr(cfg, 0) == pytest.approx(1.0)
    assert scheduled_lr(cfg, 5) == pytest.approx(0.55)
    assert scheduled_lr(cfg, 10) == pytest.approx(0.1)
    step = TrainConfig(lr=2.0, lr_schedule="step", lr_decay_every=3, lr_decay_factor=0.1)
    assert [scheduled_lr(step, e) for e in (0, 2, 3, 6)] == pytest.approx([2, 2, 0.2, 0.02])
    assert scheduled_lr(TrainConfig(lr_schedule="constant"), 99) == 1e-3


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_training_reduces_validation_error(decoder):
    train_src, val_src = waves(16, seed=0), waves(4, seed=1)
    model = LDNetModel(small_config(decoder), make_schema())
    before = evaluate(model, val_src)
    history = train(model, train_src, val_src, progress=False)
    after = evaluate(model, val_src)
    assert after.mse < before.mse / 10, (before, after)
    assert after.rel_rmse < before.rel_rmse / 3, (before, after)
    # the best epoch's weights are restored
    assert after.mse == pytest.approx(min(history.val_loss), rel=1e-6)
    assert history.best_loss == pytest.approx(after.mse, rel=1e-6)
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert after.rel_rmse == pytest.approx(history.val_rel_rmse[history.best_epoch], rel=1e-6)
    assert model.history is history and history.stop_reason == "completed"
    assert len(history.lr) == len(history.wall_time) == 60
    assert history.wall_time == sorted(history.wall_time)


def test_same_seed_same_history():
    train_src, val_src = waves(6, seed=0, n_frames=4, n=6), waves(2, seed=1, n_frames=4, n=6)

    def run(seed):
        cfg = small_config(SEP, epochs=3, batch_size=2, points_per_frame=5, seed=seed)
        model = LDNetModel(cfg, make_schema(n_frames=4))
        hist = train(model, train_src, val_src, progress=False)
        return hist, model

    (h1, m1), (h2, m2), (h3, _) = run(0), run(0), run(1)
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss
    assert all(
        torch.equal(a, b)
        for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True)
    )
    assert h1.train_loss != h3.train_loss  # another sampling seed, other batches
    d = h1.to_dict()
    assert TrainingHistory.from_dict(d) == h1 and set(d) >= {"train_loss", "val_rel_rmse", "lr"}


def test_training_without_validation_and_float64():
    src = waves(4, seed=0, n_frames=3, n=4)
    model = LDNetModel(
        small_config(MLP, epochs=2, points_per_frame=None, val_points_per_frame=3),
        make_schema(n_frames=3),
        dtype=torch.float64,
    )
    history = train(model, src, progress=False)
    assert history.val_loss == [] and history.best_loss == min(history.train_loss)
    assert model.dt.dtype == torch.float64


def test_patience_and_callback_stop_early():
    src = waves(4, seed=0, n_frames=3, n=4)
    model = LDNetModel(small_config(MLP, epochs=50, lr=1e-9, patience=2), make_schema(3))
    history = train(model, src, src, progress=False)
    assert history.stop_reason.startswith("early stopping") and len(history.epoch) < 50
    calls = []
    history = train(
        model,
        src,
        src,
        TrainConfig(epochs=5),
        progress=False,
        callback=lambda epoch, h: calls.append(epoch) or epoch == 1,
    )
    assert calls == [0, 1] and history.stop_reason == "callback"


def test_validation_subset_is_fixed_across_epochs():
    src = waves(3, seed=0, n_frames=3, n=4)
    model = LDNetModel(small_config(MLP, epochs=1), make_schema(3))
    a = evaluate(model, src, points_per_frame=5, seed=7)
    assert a == evaluate(model, src, points_per_frame=5, seed=7)
    assert a != evaluate(model, src, points_per_frame=5, seed=8)


class _ListSource:
    """A FrameSource yielding fixed batches (to feed train what TensorFrameSource refuses)."""

    def __init__(self, batches, n_runs=2, n_frames=3):
        self._batches = batches
        self.n_runs = n_runs
        self.n_frames = n_frames

    def batches(self, batch_size, points_per_frame, generator, shuffle):
        yield from self._batches


def test_training_errors():
    model = LDNetModel(small_config(MLP, epochs=1), make_schema(3))
    good = waves(2, seed=0, n_frames=3, n=4)
    with pytest.raises(ShapeError, match="training source is empty: n_runs=0"):
        train(model, _ListSource([], n_runs=0), progress=False)
    with pytest.raises(ShapeError, match="validation source is empty"):
        train(model, good, _ListSource([], n_runs=0), progress=False)
    with pytest.raises(ShapeError, match="training source yielded no batches"):
        train(model, _ListSource([]), progress=False)
    bad_params = FrameBatch(torch.zeros(2, 3), torch.zeros(4, 2), torch.zeros(2, 3, 4, 1))
    with pytest.raises(
        ShapeError, match=r"training batch has params \(2, 3\).*needs params \(B, 2\)"
    ):
        train(model, _ListSource([bad_params]), progress=False)
    bad_channels = FrameBatch(torch.zeros(2, 2), torch.zeros(4, 2), torch.zeros(2, 3, 4, 2))
    with pytest.raises(ShapeError, match=r"values \(B, T, P, 1\)"):
        train(model, good, _ListSource([bad_channels]), progress=False)
    nan = FrameBatch(torch.zeros(2, 2), torch.zeros(4, 2), torch.full((2, 3, 4, 1), math.nan))
    with pytest.raises(VariableError, match="training batch holds NaN or infinite"):
        train(model, _ListSource([nan]), progress=False)


class _Exploding(LDNetModel):
    def forward(self, u, points, n_frames):
        return super().forward(u, points, n_frames) * math.inf


def test_divergence_stops_and_restores():
    model = _Exploding(small_config(MLP, epochs=3), make_schema(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(RuntimeWarning, match="diverged: non-finite training loss in epoch 0"):
        history = train(model, waves(2, seed=0, n_frames=3, n=4), progress=False)
    assert history.epoch == [] and history.best_epoch is None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
