"""Damaged surrogate and encoder files: refused with a SurrogateFileError naming what is wrong,
before anything of the sizes they declare is allocated."""

from __future__ import annotations

import random
from importlib import resources

import pytest
import torch

from xlevda.errors import SurrogateFileError
from xlevda.pretrained import available
from xlevda.surrogates.config import LDNetConfig, LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import CosineDecoderConfig, MLPDecoderConfig
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder
from xlevda.surrogates.fileformat import content_sha256
from xlevda.surrogates.fingerprint import SurrogateFingerprint
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.schema import SurrogateSchema

SCHEMA = SurrogateSchema.minimal(4, coords=("x", "y"))


def _model(**kw) -> LDNetModel:
    config = LDNetConfig(
        latent_dim=3, dynamics_width=8, dynamics_depth=1, **({"decoder": MLPDecoderConfig()} | kw)
    )
    return LDNetModel(config, SCHEMA)


def _resave(path, edit) -> None:
    """Edit a saved payload and store it with a valid checksum (a well-formed but bad file)."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    payload["sha256"] = content_sha256(payload)
    torch.save(payload, path)


def _same(a: LDNetModel, b: LDNetModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return (
        a.schema == b.schema
        and a.config == b.config
        and sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
    )


def test_save_stores_a_checksum_that_load_verifies(tmp_path):
    path = tmp_path / "m.pt"
    _model().save(path)
    payload = torch.load(path, weights_only=True)
    assert payload["sha256"] == content_sha256(payload)
    payload["state_dict"]["decoder.net.output.bias"] += 1
    torch.save(payload, path)
    with pytest.raises(SurrogateFileError, match=r"is corrupt or was modified: its content has"):
        LDNetModel.load(path)


def test_shipped_files_record_their_checksum():
    for name in available():
        with resources.as_file(resources.files("xlevda.pretrained") / f"{name}.pt") as path:
            payload = torch.load(path, weights_only=True)
        assert payload["sha256"] == content_sha256(payload)


def test_files_without_a_checksum_load_unverified(tmp_path):
    model, path = _model(), tmp_path / "old.pt"
    model.save(path)
    payload = torch.load(path, weights_only=True)
    del payload["sha256"]
    torch.save(payload, path)
    assert _same(LDNetModel.load(path), model)


def test_truncated_and_flipped_files_are_refused_or_load_unchanged(tmp_path):
    model, path = _model(), tmp_path / "m.pt"
    model.save(path)
    data = path.read_bytes()
    rng = random.Random(0)
    refused = 0
    for i in range(30):
        damaged = bytearray(data)
        if i % 3 == 0:
            damaged = damaged[: rng.randrange(len(data))]
        else:
            pos = rng.randrange(len(data))
            damaged[pos] ^= 1 << rng.randrange(8)
        bad = tmp_path / f"bad{i}.pt"
        bad.write_bytes(bytes(damaged))
        try:
            loaded = LDNetModel.load(bad)
        except SurrogateFileError:
            refused += 1
            continue
        assert _same(loaded, model), f"damage {i} loaded a different model"
    assert refused >= 20


def test_a_nan_weight_is_refused_by_name(tmp_path):
    path = tmp_path / "nan.pt"
    _model().save(path)
    _resave(path, lambda p: p["state_dict"]["decoder.net.output.bias"].__setitem__(0, float("nan")))
    with pytest.raises(
        SurrogateFileError, match=r"weight 'decoder.net.output.bias' holds 1 NaN or infinite value"
    ):
        LDNetModel.load(path)


def test_huge_declared_sizes_are_refused_before_allocating(tmp_path, monkeypatch):
    """A linear LDNet declaring latent_dim = 20000 would allocate 1.6 GB for its matrix A."""
    config = LDNetConfig(
        latent_dim=4,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(n_centres=3),
        decoder=CosineDecoderConfig(n_terms=3),
    )
    path = tmp_path / "huge.pt"
    LDNetModel(config, SCHEMA).save(path)
    _resave(path, lambda p: p["config"].__setitem__("latent_dim", 20000))
    devices = []
    init = LDNetModel.__init__

    def recording_init(self, *args, **kwargs):
        devices.append(torch.get_default_device().type)
        init(self, *args, **kwargs)

    monkeypatch.setattr(LDNetModel, "__init__", recording_init)
    with pytest.raises(
        SurrogateFileError, match=r"weight 'dynamics.A' has shape \(3, 3\), .* declares \(19999,"
    ):
        LDNetModel.load(path)
    assert devices == ["meta"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda p: p["config"].__setitem__("latent_dim", "3"), r"LDNetConfig.latent_dim"),
        (lambda p: p["schema"].__setitem__("variables", [1]), r"schema variables must be"),
        (lambda p: p["schema"].__setitem__("time_step", float("nan")), r"time_step must be"),
        (lambda p: p["schema"].__setitem__("n_frames", 0), r"n_frames must be an integer"),
        (
            lambda p: p["schema"]["param_norm"].__setitem__("offset", [float("inf")]),
            r"param_norm.offset must be 1 finite numbers",
        ),
        (lambda p: p["schema"].__setitem__("param_range", [[1.0, -1.0]]), r"low <= high"),
        (lambda p: p["schema"].__setitem__("grid", {"z": [0.0]}), r"grid must map coordinates"),
        (lambda p: p.__setitem__("metadata", [1]), r"metadata must be a dict"),
        (lambda p: p.__setitem__("state_dict", [1]), r"state_dict must map names to tensors"),
        (lambda p: p.__setitem__("dtype", 3), r"invalid dtype 3"),
        (
            lambda p: p["state_dict"].__setitem__("dt0", torch.tensor(-1.0)),
            r"latent step dt is -1.0, expected finite > 0",
        ),
        (
            lambda p: p["state_dict"].__setitem__("dt0", torch.tensor(1, dtype=torch.int64)),
            r"weight 'dt0' has dtype torch.int64, expected a floating dtype",
        ),
    ],
)
def test_wrong_types_and_values_are_refused(tmp_path, edit, match):
    path = tmp_path / "bad.pt"
    _model().save(path)
    _resave(path, edit)
    with pytest.raises(SurrogateFileError, match=match):
        LDNetModel.load(path)


def _encoder() -> ObservationEncoder:
    network = ObservationNetwork(points=[[0.0, 0.0], [0.5, 0.5]], channels=(0,))
    return ObservationEncoder(EncoderConfig(hidden=4), network, SurrogateFingerprint.of(_model()))


def test_damaged_encoder_files_are_refused(tmp_path):
    path = tmp_path / "e.pt"
    _encoder().save(path)
    ObservationEncoder.load(path)
    _resave(path, lambda p: p["state_dict"]["head.bias"].__setitem__(0, float("inf")))
    with pytest.raises(SurrogateFileError, match=r"weight 'head.bias' holds 1 NaN or infinite"):
        ObservationEncoder.load(path)
    _encoder().save(path)
    _resave(path, lambda p: p["config"].__setitem__("hidden", 10**5))
    with pytest.raises(SurrogateFileError, match=r"has shape \(16, 2\), .* declares \(400000, 2\)"):
        ObservationEncoder.load(path)
    _encoder().save(path)
    _resave(path, lambda p: p["fingerprint"].__setitem__("dt", float("nan")))
    with pytest.raises(SurrogateFileError, match=r"invalid encoder: .*fingerprint.dt"):
        ObservationEncoder.load(path)
