"""LDNetModel: protocol, shifted-start rollout, eq. 17, gradients, config and file format."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.core.dynamics import interpolate_latent
from xlevda.errors import ConfigError, ShapeError, SurrogateFileError
from xlevda.surrogates.config import LDNetConfig, TrainConfig, config_from_dict, config_to_dict
from xlevda.surrogates.decoder_configs import MLPDecoderConfig, SeparableDecoderConfig
from xlevda.surrogates.fileformat import SURROGATE_FORMAT
from xlevda.surrogates.history import TrainingHistory
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.protocol import Surrogate
from xlevda.surrogates.schema import Affine, SurrogateSchema

F64 = torch.float64


def make_schema(n_params: int = 2, n_coords: int = 2, n_channels: int = 2, n_frames: int = 4):
    return SurrogateSchema(
        variables=tuple(f"v{i}" for i in range(n_channels)),
        variable_attrs=({},) * n_channels,
        output_norm=Affine((0.0,) * n_channels, (1.0,) * n_channels),
        coords=tuple(f"x{i}" for i in range(n_coords)),
        coord_attrs=({},) * n_coords,
        coord_norm=Affine((0.0,) * n_coords, (1.0,) * n_coords),
        params=tuple(f"p{i}" for i in range(n_params)),
        param_attrs=({},) * n_params,
        param_norm=Affine((0.0,) * n_params, (1.0,) * n_params),
        param_range=((-1.0, 1.0),) * n_params,
        time_origin="0",
        time_step=1.0,
        time_units="s",
        time_is_datetime=False,
        n_frames=n_frames,
    )


MLP = MLPDecoderConfig(width=6, depth=2, n_fourier=3)
SEP = SeparableDecoderConfig(
    n_basis=4, basis_width=6, basis_depth=2, coef_width=5, coef_depth=1, n_fourier=3
)


def small_config(decoder=MLP, **kw) -> LDNetConfig:
    base = {"latent_dim": 3, "dynamics_width": 5, "dynamics_depth": 2, "decoder": decoder}
    return LDNetConfig(**(base | kw))


def make_model(decoder=MLP, dtype=F64, **kw) -> LDNetModel:
    return LDNetModel(small_config(decoder, **kw), make_schema(), dtype=dtype)


# ----------------------------------------------------------------------------- protocol


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_satisfies_surrogate_protocol(decoder):
    model = make_model(decoder)
    assert isinstance(model, Surrogate)
    assert (model.latent_dim, model.param_dim) == (3, 2)
    assert model.dt.shape == () and model.dt.dtype == F64
    s, u = torch.zeros(5, 3, dtype=F64), torch.zeros(5, 2, dtype=F64)
    assert model.vector_field(s, u).shape == (5, 3)
    assert model.decode(s, torch.zeros(7, 2, dtype=F64)).shape == (5, 7, 2)


def test_dtype_device_and_seeded_init():
    a = LDNetModel(small_config(), make_schema())
    assert a.dt.dtype == torch.float32 and a.dt.device.type == "cpu"
    state = torch.random.get_rng_state()
    b = LDNetModel(small_config(), make_schema())
    assert torch.equal(state, torch.random.get_rng_state()), "init must not touch the global RNG"
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    c = LDNetModel(small_config(seed=1), make_schema())
    assert not torch.equal(a.dynamics.net.output.weight, c.dynamics.net.output.weight)


def test_dt_default_fixed_and_learnable():
    model = make_model(learnable_dt=False)
    assert float(model.dt) == pytest.approx(1 / 4)  # 1 / n_frames
    assert "log_dt_scale" not in dict(model.named_parameters())
    model = make_model(dt0=0.3, learnable_dt=True)
    assert model.dt.item() == pytest.approx(0.3)
    model.rollout(torch.ones(2, dtype=F64), 3).sum().backward()
    assert model.log_dt_scale.grad is not None and model.log_dt_scale.grad.abs() > 0
    with torch.no_grad():
        model.log_dt_scale.fill_(-50.0)
    assert 0 < model.dt.item() < 1e-20  # positive by construction


def test_schema_without_parameters_is_rejected():
    with pytest.raises(ShapeError, match="needs at least one parameter"):
        LDNetModel(small_config(), make_schema(n_params=0))


# ----------------------------------------------------------------------------- rollout


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_shifted_start(decoder):
    model = make_model(decoder)
    u = torch.tensor([[0.5, -0.2], [-0.7, 0.9]], dtype=F64)
    s = model.rollout(u, 5)
    assert s.shape == (2, 5, 3)
    zero = torch.zeros(2, 3, dtype=F64)
    torch.testing.assert_close(s[:, 0], model.dt * model.vector_field(zero, u))
    assert not torch.allclose(s[0, 0], s[1, 0])
    for k in range(4):
        step = s[:, k] + model.dt * model.vector_field(s[:, k], u)
        torch.testing.assert_close(s[:, k + 1], step)
    # a rollout is a prefix of a longer one
    torch.testing.assert_close(model.rollout(u, 3), s[:, :3])


def test_rollout_and_forward_shapes_and_errors():
    model = make_model(SEP)
    u = torch.zeros(4, 2, 2, dtype=F64)
    assert model.rollout(u, 3).shape == (4, 2, 3, 3)
    assert model(u[:, 0], torch.zeros(3, 5, 2, dtype=F64), 3).shape == (4, 3, 5, 2)
    assert model(u[:, 0], torch.zeros(5, 2, dtype=F64), 3).shape == (4, 3, 5, 2)
    with pytest.raises(ShapeError, match=r"u must have last dimension param_dim=2, got \(4, 3\)"):
        model.rollout(torch.zeros(4, 3, dtype=F64), 3)
    with pytest.raises(ShapeError, match="n_frames must be >= 1, got 0"):
        model.rollout(torch.zeros(4, 2, dtype=F64), 0)
    with pytest.raises(ShapeError, match=r"points must have shape \(n_frames=3, P, n_coords\)"):
        model(u[:, 0], torch.zeros(4, 5, 2, dtype=F64), 3)


@settings(max_examples=25, deadline=None)
@given(
    u=st.lists(st.floats(-1, 1), min_size=2, max_size=2),
    k=st.integers(0, 3),
    frac=st.floats(0, 1),
)
def test_eq17_interpolation_through_model(u, k, frac):
    model = _EQ17_MODEL
    u = torch.tensor(u, dtype=F64)
    s = model.rollout(u, 5).detach()
    uu = u.expand(5, 2)
    step = torch.tensor([k])

    def at(a: float) -> torch.Tensor:
        return interpolate_latent(
            model.vector_field, s, uu, model.dt, step, torch.tensor([a], dtype=F64)
        ).detach()[0]

    torch.testing.assert_close(at(0.0), s[k])
    torch.testing.assert_close(at(1.0), s[k + 1])  # forward Euler: continuous across steps
    # linear in the fraction between the two on-step states
    torch.testing.assert_close(at(frac), s[k] + frac * (s[k + 1] - s[k]))


_EQ17_MODEL = make_model()


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_gradcheck_rollout_and_decode(decoder):
    model = make_model(decoder, dt0=0.4)
    pts = torch.rand(2, 3, 2, dtype=F64) * 2 - 1
    u = torch.randn(2, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: model(u, pts, 2), (u,))
    s = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: model.decode(s, pts), (s,))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: LDNetConfig(latent_dim=0),
            r"LDNetConfig.latent_dim must be an integer >= 1, got 0",
        ),
        (lambda: LDNetConfig(latent_dim=2.5), r"latent_dim must be an integer >= 1, got 2.5"),
        (lambda: LDNetConfig(dynamics_depth=True), r"dynamics_depth must be an integer"),
        (lambda: LDNetConfig(activation="relu"), r"activation must be one of .*got 'relu'"),
        (lambda: LDNetConfig(dt0=-1.0), r"LDNetConfig.dt0 must be a finite number in \(0.0, inf\)"),
        (lambda: LDNetConfig(dt0=float("nan")), r"dt0 must be a finite number"),
        (lambda: LDNetConfig(decoder={"kind": "mlp"}), r"decoder must be an MLPDecoderConfig"),
        (lambda: LDNetConfig(learnable_dt=1, decoder=MLP), r"learnable_dt must be a bool, got 1"),
        (lambda: LDNetConfig(dynamics_linear="yes"), r"dynamics_linear must be a bool, got .yes."),
        (lambda: LDNetConfig(seed=-1), r"LDNetConfig.seed must be an integer >= 0, got -1"),
        (lambda: MLPDecoderConfig(width=0), r"MLPDecoderConfig.width must be an integer >= 1"),
        (lambda: MLPDecoderConfig(fourier_scale=0.0), r"fourier_scale must be a finite number"),
        (lambda: SeparableDecoderConfig(n_basis=0), r"SeparableDecoderConfig.n_basis must be"),
        (lambda: TrainConfig(epochs=0), r"TrainConfig.epochs must be an integer >= 1, got 0"),
        (lambda: TrainConfig(points_per_frame=0), r"points_per_frame must be an integer >= 1"),
        (lambda: TrainConfig(lr=0.0), r"TrainConfig.lr must be a finite number in \(0.0, inf\)"),
        (lambda: TrainConfig(lr_schedule="exp"), r"lr_schedule must be one of .*got 'exp'"),
        (lambda: TrainConfig(lr_decay_factor=1.5), r"lr_decay_factor must be .* in \(0.0, 1.0\]"),
        (lambda: TrainConfig(grad_clip=-1.0), r"grad_clip must be a finite number"),
        (lambda: TrainConfig(patience=0), r"patience must be an integer >= 1, got 0"),
        (lambda: TrainConfig(validation_fraction=1.0), r"validation_fraction .* in \[0.0, 1.0\)"),
    ],
)
def test_config_validation(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_config_round_trips_through_json(decoder):
    cfg = small_config(decoder, dt0=0.2, train=TrainConfig(points_per_frame=None, patience=3))
    back = config_from_dict(json.loads(json.dumps(config_to_dict(cfg))))
    assert back == cfg and cfg.to_dict() == config_to_dict(cfg)


def test_config_from_dict_errors():
    with pytest.raises(ConfigError, match=r"LDNetConfig has unknown keys \['width'\]"):
        config_from_dict({"width": 3})
    kinds = r"\('mlp', 'separable', 'cosine'\)"
    with pytest.raises(ConfigError, match=rf"decoder.kind must be one of {kinds}"):
        config_from_dict({"decoder": {"kind": "siren"}})
    with pytest.raises(ConfigError, match=r"LDNetConfig.train has unknown keys \['epoch'\]"):
        config_from_dict({"train": {"epoch": 3}})
    with pytest.raises(ConfigError, match="LDNetConfig data must be a dict, got list"):
        config_from_dict([])


# ----------------------------------------------------------------------------- files


class _Subclass(LDNetModel):
    pass


def _roundtrip(model: LDNetModel, cls=LDNetModel) -> LDNetModel:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.pt")
        model.save(path)
        return cls.load(path)


@settings(max_examples=8, deadline=None)
@given(
    decoder=st.sampled_from([MLP, SEP]),
    learnable=st.booleans(),
    dtype=st.sampled_from([torch.float32, F64]),
    latent=st.integers(1, 4),
    seed=st.integers(0, 3),
    linear=st.booleans(),
)
def test_save_load_gives_identical_predictions(decoder, learnable, dtype, latent, seed, linear):
    model = LDNetModel(
        small_config(
            decoder, latent_dim=latent, learnable_dt=learnable, seed=seed, dynamics_linear=linear
        ),
        make_schema(),
        dtype=dtype,
    )
    if linear:
        with torch.no_grad():
            model.dynamics.linear_s.normal_()
    if learnable:
        with torch.no_grad():
            model.log_dt_scale.fill_(0.37)
    loaded = _roundtrip(model)
    assert loaded.config == model.config and loaded.schema == model.schema
    assert loaded.dt.dtype == dtype and torch.equal(loaded.dt, model.dt)
    u = torch.randn(3, 2, dtype=dtype)
    pts = torch.rand(4, 6, 2, dtype=dtype)
    torch.testing.assert_close(loaded(u, pts, 4), model(u, pts, 4), rtol=0, atol=0)


def test_load_keeps_subclass_history_and_metadata():
    model = _Subclass(small_config(), make_schema())
    model.history = TrainingHistory(epoch=[0], train_loss=[0.5], best_epoch=0, best_loss=0.5)
    model.metadata = {"note": "test", "n": [1, 2]}
    loaded = _roundtrip(model, _Subclass)
    assert type(loaded) is _Subclass
    assert loaded.history == model.history and loaded.metadata == model.metadata


def test_save_rejects_non_json_metadata(tmp_path):
    model = make_model()
    model.metadata = {"x": object()}
    with pytest.raises(ConfigError, match="metadata must be JSON-serializable"):
        model.save(tmp_path / "m.pt")


def _payload(tmp_path) -> dict:
    """A saved model's payload without its checksum (as older files), so edits are read."""
    make_model().save(tmp_path / "good.pt")
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    del payload["sha256"]
    return payload


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            lambda p: p | {"format_version": SURROGATE_FORMAT.version + 1},
            r"has format version 2, .*reads versions <= 1; upgrade xlevda",
        ),
        (lambda p: p | {"kind": "fno"}, r"holds a surrogate of kind 'fno', expected 'ldnet'"),
        (lambda p: p | {"format": "other"}, r"has format 'other', expected 'xlevda-surrogate'"),
        (lambda p: {k: v for k, v in p.items() if k != "schema"}, r"lacks the keys \['schema'\]"),
        (
            lambda p: p | {"config": p["config"] | {"latent_dim": 5}},
            r"weight '.*' has shape .*, the stored config declares",
        ),
        (lambda p: p | {"config": p["config"] | {"latent_dim": 0}}, r"invalid config.*latent_dim"),
        (lambda p: p | {"dtype": "int64"}, r"invalid dtype 'int64'"),
        (lambda p: [1, 2], r"holds a list, not an xlevda surrogate"),
    ],
)
def test_load_rejects_bad_payloads(tmp_path, edit, match):
    torch.save(edit(_payload(tmp_path)), tmp_path / "bad.pt")
    with pytest.raises(SurrogateFileError, match=match):
        LDNetModel.load(tmp_path / "bad.pt")


def test_load_rejects_unreadable_files(tmp_path):
    make_model().save(tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.pt").write_text("not a torch file")
    corrupt = bytearray(data)
    corrupt[len(data) // 3 : len(data) // 3 + 200] = b"\x00" * 200
    (tmp_path / "corrupt.pt").write_bytes(bytes(corrupt))
    for name in ("truncated.pt", "text.pt", "corrupt.pt"):
        with pytest.raises(SurrogateFileError, match="is not a readable xlevda surrogate file"):
            LDNetModel.load(tmp_path / name)
    torch.save({"format": "xlevda-surrogate", "obj": _Subclass}, tmp_path / "pickled.pt")
    with pytest.raises(SurrogateFileError, match="not a readable xlevda surrogate file"):
        LDNetModel.load(tmp_path / "pickled.pt")
    with pytest.raises(FileNotFoundError):
        LDNetModel.load(tmp_path / "missing.pt")


def test_file_holds_documented_keys(tmp_path):
    payload = _payload(tmp_path)
    assert payload["format"] == "xlevda-surrogate" and payload["kind"] == "ldnet"
    assert payload["format_version"] == SURROGATE_FORMAT.version
    assert isinstance(payload["xlevda_version"], str) and payload["dtype"] == "float64"
    assert SurrogateSchema.from_dict(payload["schema"]) == make_schema()
    assert config_from_dict(payload["config"]) == small_config()
    assert "log_dt_scale" in payload["state_dict"] and "dt0" in payload["state_dict"]


@pytest.mark.parametrize("decoder", [MLP, SEP], ids=["mlp", "separable"])
def test_linear_vector_field_term_leaves_the_other_weights_as_they_were(decoder):
    plain = make_model(decoder)
    linear = make_model(decoder, dynamics_linear=True)
    extra = {"dynamics.linear_s", "dynamics.linear_u"}
    state = linear.state_dict()
    assert set(state) - set(plain.state_dict()) == extra
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0)
    u, pts = torch.randn(3, 2, dtype=F64), torch.rand(4, 6, 2, dtype=F64)
    torch.testing.assert_close(linear(u, pts, 4), plain(u, pts, 4), rtol=0, atol=0)
