"""LSTM observation encoder: networks, fingerprints, training data, training, files."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from tests.core.models import LinearSurrogate
from xlevda.core.prior import prior_params
from xlevda.errors import (
    ConfigError,
    ObservationError,
    ShapeError,
    SurrogateFileError,
)
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder
from xlevda.surrogates.encoder_training import (
    fit_encoder,
    latent_targets,
    surrogate_histories,
)
from xlevda.surrogates.fingerprint import SurrogateFingerprint
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.schema import Affine, SurrogateSchema

F64 = torch.float64


def make_schema(param_range=((-1.0, 1.0), (0.0, 2.0))) -> SurrogateSchema:
    return SurrogateSchema(
        variables=("h", "v"),
        variable_attrs=({}, {}),
        output_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        coords=("x", "y"),
        coord_attrs=({}, {}),
        coord_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        params=("a", "b"),
        param_attrs=({}, {}),
        param_norm=Affine.from_range((-1.0, 0.0), (1.0, 2.0)),
        param_range=param_range,
        time_origin="0",
        time_step=1.0,
        time_units="s",
        time_is_datetime=False,
        n_frames=20,
    )


def linear_surrogate(seed: int = 0, d_s: int = 3, **schema_kw) -> LinearSurrogate:
    """``s' = A s + B u`` (float64) decoded affinely at 2-D points into two channels."""
    surrogate = LinearSurrogate(d_s, 2, 2, seed=seed, dt=0.1)
    surrogate.schema = make_schema(**schema_kw)
    return surrogate


NETWORK = ObservationNetwork(points=[[0.3, -0.2], [-0.5, 0.6], [0.1, 0.9]], channels=(0, 1))
SMALL = EncoderConfig(hidden=24, epochs=120, batch_size=16, lr=1e-2, noise_ratio=0.05)


@pytest.fixture(scope="module")
def trained():
    surrogate = linear_surrogate()
    y, u = surrogate_histories(surrogate, NETWORK, n_runs=60, n_obs=12, seed=1)
    return surrogate, y, u, fit_encoder(surrogate, NETWORK, y, u, SMALL)


# ------------------------------------------------------------------ configs and networks


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("hidden", 0, r"EncoderConfig.hidden must be an integer >= 1, got 0"),
        ("layers", 1.5, r"EncoderConfig.layers must be an integer >= 1, got 1.5"),
        ("epochs", -1, r"EncoderConfig.epochs"),
        ("batch_size", True, r"EncoderConfig.batch_size .* got True"),
        ("lr", 0.0, r"EncoderConfig.lr must be a finite number in \(0.0, inf\), got 0.0"),
        ("lr_min_factor", 2.0, r"EncoderConfig.lr_min_factor .* got 2.0"),
        ("grad_clip", -1.0, r"EncoderConfig.grad_clip"),
        ("noise_ratio", float("nan"), r"EncoderConfig.noise_ratio .* got nan"),
        ("val_fraction", 1.0, r"EncoderConfig.val_fraction .* got 1.0"),
        ("seed", -3, r"EncoderConfig.seed .* got -3"),
    ],
)
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ConfigError, match=match):
        EncoderConfig(**{field: value})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"points": [0.0, 1.0]}, r"points must have shape \(P, n_coords\).*got shape \(2,\)"),
        ({"points": [[0.0, float("nan")]]}, r"points hold NaN"),
        ({"points": [["a", "b"]]}, r"points must be numbers"),
        ({"channels": ()}, r"channels must be a non-empty tuple .* got \(\)"),
        ({"channels": (0, 0)}, r"distinct .* got \(0, 0\)"),
        ({"channels": (-1,)}, r"got \(-1,\)"),
        ({"first_frame": -1}, r"ObservationNetwork.first_frame must be an integer >= 0"),
        ({"frame_stride": 0}, r"ObservationNetwork.frame_stride must be an integer >= 1"),
    ],
)
def test_network_rejects_bad_values(kwargs, match):
    base = {"points": [[0.0, 0.0]], "channels": (0,)}
    with pytest.raises((ObservationError, ConfigError), match=match):
        ObservationNetwork(**(base | kwargs))


def test_network_accepts_tensors_and_reports_differences():
    net = ObservationNetwork(points=torch.tensor([[0.0, 1.0], [0.5, 0.5]]), channels=[1])
    assert net.points == ((0.0, 1.0), (0.5, 0.5)) and net.channels == (1,)
    assert net.n_features == 2 and net.frames(3).tolist() == [0, 1, 2]
    same = ObservationNetwork(points=[[1e-8, 1.0], [0.5, 0.5]], channels=(1,))
    assert net.difference(same) is None
    moved = dataclasses.replace(net, points=[[0.0, 1.0], [0.5, 0.6]])
    assert net.difference(moved) == "point 1 at (0.5, 0.5) != (0.5, 0.6)"
    assert "shape (2, 2) != (1, 2)" in net.difference(dataclasses.replace(net, points=[[0, 1]]))
    strided = dataclasses.replace(net, first_frame=1, frame_stride=2)
    assert net.difference(strided) == (
        "observation frames (first_frame, frame_stride) (0, 1) != (1, 2)"
    )
    assert strided.frames(3).tolist() == [1, 3, 5]


def test_fingerprint_tells_surrogates_apart():
    base = SurrogateFingerprint.of(linear_surrogate())
    assert base.difference(SurrogateFingerprint.of(linear_surrogate())) is None
    cases = [
        (linear_surrogate(seed=5), r"^latent trajectories at the probe parameters differ"),
        (linear_surrogate(d_s=4), r"^latent_dim 3 != 4$"),
        (
            linear_surrogate(param_range=((-1.0, 1.0), (0.0, 3.0))),
            r"^schema 'param_range' \[\[-1.0, 1.0\], \[0.0, 2.0\]\] != .*3.0",
        ),
    ]
    for other, match in cases:
        diff = base.difference(SurrogateFingerprint.of(other))
        assert diff is not None
        assert re.search(match, diff), diff
    changed = linear_surrogate()
    changed._dt = torch.tensor(0.2, dtype=F64)
    assert base.difference(SurrogateFingerprint.of(changed)) == "latent step dt 0.1 != 0.2"


# ------------------------------------------------------------------ training data


def test_latent_targets_equal_a_per_run_euler_loop():
    surrogate = linear_surrogate()
    net = dataclasses.replace(NETWORK, first_frame=2, frame_stride=3)
    u = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    got = latent_targets(surrogate, net, u, 4)
    assert got.shape == (4, 4, 5)
    for r in range(4):
        s, frames = torch.zeros(3, dtype=F64), []
        for _ in range(2 + 3 * 3 + 1):  # frame k is reached after k + 1 steps
            s = s + 0.1 * (surrogate.A @ s + surrogate.B @ u[r])
            frames.append(s)
        want = torch.stack([frames[k] for k in (2, 5, 8, 11)])
        torch.testing.assert_close(got[r, :, :3], want)
        torch.testing.assert_close(got[r, :, 3:], u[r].expand(4, 2))


def test_surrogate_histories_decode_the_rollout_at_the_network():
    surrogate = linear_surrogate()
    net = ObservationNetwork(points=[[0.3, -0.2], [-0.5, 0.6]], channels=(1,))
    y, u = surrogate_histories(surrogate, net, n_runs=5, n_obs=6, seed=3)
    assert y.shape == (5, 6, 2) and u.shape == (5, 2) and y.dtype == F64
    s = latent_targets(surrogate, net, u, 6)[..., :3]
    want = surrogate.decode(s, net.points_tensor(dtype=F64))[..., 1]
    torch.testing.assert_close(y, want)
    y2, u2 = surrogate_histories(surrogate, net, n_runs=5, n_obs=6, seed=3)
    assert torch.equal(y, y2) and torch.equal(u, u2)
    assert not torch.equal(u, surrogate_histories(surrogate, net, 5, 6, seed=4)[1])


def test_prior_params_cover_the_physical_range_in_normalized_units():
    schema = make_schema()
    gen = torch.Generator().manual_seed(0)
    u = prior_params(schema, 4000, gen, dtype=F64)
    # b in [0, 2] maps onto [-1, 1]; a custom range [0.5, 1.0] onto [-0.5, 0]
    assert u.min() >= -1 and u.max() <= 1 and u.min() < -0.99 and u.max() > 0.99
    narrow = prior_params(schema, 4000, gen, ((0.0, 0.0), (0.5, 1.0)), dtype=F64)
    assert torch.all(narrow[:, 0] == 0)
    assert narrow[:, 1].min() >= -0.5 and narrow[:, 1].max() <= 0.0
    with pytest.raises(ConfigError, match=r"prior_range must hold one finite \(lo, hi\).*\(2\)"):
        prior_params(schema, 3, gen, ((1.0, 0.0), (0.0, 1.0)))
    with pytest.raises(ConfigError, match=r"got \(\(0.0, 1.0\),\)"):
        prior_params(schema, 3, gen, ((0.0, 1.0),))


def test_histories_reject_a_network_the_surrogate_cannot_decode():
    surrogate = linear_surrogate()
    with pytest.raises(ObservationError, match=r"network points have 1 coordinates.*decodes 2"):
        surrogate_histories(surrogate, ObservationNetwork([[0.0]], (0,)), 2, 2)
    with pytest.raises(ObservationError, match=r"channels \(0, 2\) include an index >= .* 2"):
        surrogate_histories(surrogate, ObservationNetwork([[0.0, 0.0]], (0, 2)), 2, 2)


# ------------------------------------------------------------------ training


def test_training_learns_latent_states_and_parameters(trained):
    surrogate, *_, encoder = trained
    hist = encoder.history
    assert hist.val_loss[hist.best_epoch] == min(hist.val_loss)
    assert hist.train_loss[-1] < 0.2 * hist.train_loss[0]
    # the validation error per component, relative to the spread of the targets
    assert encoder.error_std.shape == (12, 5)
    relative = (encoder.error_std / encoder.out_std).square().mean(0).sqrt()
    assert torch.all(relative < 0.4), relative
    # errors are estimates on held-out runs: fresh runs see errors of the same size
    y_new, u_new = surrogate_histories(surrogate, NETWORK, n_runs=40, n_obs=12, seed=9)
    with torch.no_grad():
        err = encoder(y_new) - latent_targets(surrogate, NETWORK, u_new, 12).float()
    fresh = err.square().mean((0, 1)).sqrt()
    estimate = encoder.error_std.square().mean(0).sqrt()
    assert torch.all(fresh < 3 * estimate) and torch.all(fresh > estimate / 3), (fresh, estimate)


def test_encoder_is_causal(trained):
    *_, encoder = trained
    y = torch.randn(2, 12, 6, generator=torch.Generator().manual_seed(0))
    later = y.clone()
    later[:, 7:] += 5.0
    with torch.no_grad():
        a, b = encoder(y), encoder(later)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_encoder_batches_over_leading_dims(trained):
    *_, y, _, encoder = trained
    with torch.no_grad():
        batched = encoder(y[:6].reshape(2, 3, 12, 6))
        single = torch.stack([encoder(y[i]) for i in range(6)])
    torch.testing.assert_close(batched.reshape(6, 12, 5), single)


def test_training_is_reproducible_and_uses_the_noise():
    surrogate = linear_surrogate()
    y, u = surrogate_histories(surrogate, NETWORK, n_runs=10, n_obs=5, seed=1)
    cfg = EncoderConfig(hidden=8, epochs=3, batch_size=4)
    a, b = (fit_encoder(surrogate, NETWORK, y, u, cfg) for _ in range(2))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    clean = fit_encoder(surrogate, NETWORK, y, u, dataclasses.replace(cfg, noise_ratio=0.0))
    assert not torch.equal(a.error_std, clean.error_std)


def test_error_std_is_at_least_the_outputs_resolution():
    """Every component's pseudo-observation error is at least sqrt(eps) times its scale,
    max(std, |mean|) (a constant component has std 1 by convention), so that a component
    predicted exactly (a latent clock that is 1 in every run) is not taken as exact."""
    surrogate = linear_surrogate()
    y, u = surrogate_histories(surrogate, NETWORK, n_runs=10, n_obs=5, seed=1)
    u[:, 1] = 0.5
    enc = fit_encoder(surrogate, NETWORK, y, u, EncoderConfig(hidden=8, epochs=3, batch_size=4))
    scale = torch.maximum(enc.out_std, enc.out_mean.abs())
    assert float(enc.out_std[-1]) == 1.0 and float(scale[-1]) == 1.0
    floor = torch.finfo(torch.float32).eps ** 0.5 * scale
    assert (enc.error_std >= floor).all()


def test_training_accepts_external_validation_runs_and_dtype():
    surrogate = linear_surrogate()
    y, u = surrogate_histories(surrogate, NETWORK, n_runs=6, n_obs=4, seed=1)
    y_val, u_val = surrogate_histories(surrogate, NETWORK, n_runs=3, n_obs=7, seed=2)
    enc = fit_encoder(
        surrogate,
        NETWORK,
        y,
        u,
        EncoderConfig(hidden=8, epochs=2),
        val_histories=y_val,
        val_params=u_val,
        dtype=F64,
    )
    assert enc.error_std.shape == (7, 5) and enc.error_std.dtype == F64
    assert enc.observation_std(9).shape == (9, 5)
    torch.testing.assert_close(enc.observation_std(9)[7:], enc.error_std[-1].expand(2, 5))
    with pytest.raises(ConfigError, match="give both val_histories and val_params"):
        fit_encoder(surrogate, NETWORK, y, u, val_histories=y_val)


@pytest.mark.parametrize(
    ("y_shape", "u_shape", "error", "match"),
    [
        ((4, 3, 5), (4, 2), ShapeError, r"shape \(R=4, T >= 1, P \* C = 6\), got \(4, 3, 5\)"),
        ((4, 3, 6), (3, 2), ShapeError, r"got \(4, 3, 6\)"),
        ((4, 3, 6), (4, 3), ShapeError, r"params must be a tensor of shape \(R, d_u=2\)"),
        ((1, 3, 6), (1, 2), ShapeError, r"need at least 2 training runs .* got 1"),
    ],
)  # fmt: skip
def test_training_rejects_bad_inputs(y_shape, u_shape, error, match):
    with pytest.raises(error, match=match):
        fit_encoder(linear_surrogate(), NETWORK, torch.zeros(y_shape), torch.zeros(u_shape))


def test_training_and_encoding_reject_non_finite_observations(trained):
    *_, encoder = trained
    y = torch.zeros(4, 3, 6)
    y[1, 2, 0] = torch.nan
    with pytest.raises(ObservationError, match=r"training histories hold NaN"):
        fit_encoder(linear_surrogate(), NETWORK, y, torch.zeros(4, 2))
    with pytest.raises(ObservationError, match=r"histories hold NaN or infinite values"):
        encoder(y)
    with pytest.raises(ShapeError, match=r"histories must have shape \(..., T, P \* C = 3 \* 2"):
        encoder(torch.zeros(3, 5))


# ------------------------------------------------------------------ files and compatibility


def test_save_load_round_trip_gives_identical_outputs(trained, tmp_path):
    surrogate, y, _, encoder = trained
    path = tmp_path / "encoder.pt"
    encoder.save(path)
    loaded = ObservationEncoder.load(path, surrogate, NETWORK)
    assert loaded.network == encoder.network and loaded.config == encoder.config
    assert loaded.fingerprint.difference(encoder.fingerprint) is None
    assert loaded.history.val_loss == encoder.history.val_loss
    torch.testing.assert_close(loaded.error_std, encoder.error_std, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded(y), encoder(y), rtol=0, atol=0)


def test_wrong_network_or_surrogate_raises(trained, tmp_path):
    surrogate, *_, encoder = trained
    path = tmp_path / "encoder.pt"
    encoder.save(path)
    moved = dataclasses.replace(NETWORK, points=[[0.3, -0.2], [-0.5, 0.6], [0.1, 0.8]])
    with pytest.raises(ObservationError, match=r"another observation network: point 2 at"):
        ObservationEncoder.load(path, surrogate, moved)
    with pytest.raises(ObservationError, match=r"channels \(0, 1\) != \(1, 0\)"):
        encoder.check(surrogate, dataclasses.replace(NETWORK, channels=(1, 0)))
    with pytest.raises(SurrogateFileError, match=r"another surrogate: latent trajectories"):
        ObservationEncoder.load(path, linear_surrogate(seed=7))
    with pytest.raises(SurrogateFileError, match=r"another surrogate: latent_dim 3 != 4"):
        encoder.check(linear_surrogate(d_s=4))
    with pytest.raises(ConfigError, match=r"network is checked .* only with a surrogate"):
        ObservationEncoder.load(path, network=NETWORK)


def test_load_rejects_files_that_are_not_encoders(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(SurrogateFileError, match=r"junk.pt' is not a readable xlevda encoder"):
        ObservationEncoder.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "xlevda-surrogate"}, other)
    with pytest.raises(SurrogateFileError, match=r"format 'xlevda-surrogate', expected 'xlevda-"):
        ObservationEncoder.load(other)
    newer = tmp_path / "newer.pt"
    torch.save({"format": "xlevda-encoder", "format_version": 99}, newer)
    with pytest.raises(
        SurrogateFileError, match=r"has format version 99, .*reads versions <= 1; upgrade"
    ):
        ObservationEncoder.load(newer)
    broken = tmp_path / "broken.pt"
    torch.save({"format": "xlevda-encoder", "format_version": 1, "config": {}}, broken)
    missing = r"lacks the keys \[.network., .fingerprint., .dtype., .state_dict.\]"
    with pytest.raises(SurrogateFileError, match=missing):
        ObservationEncoder.load(broken)


def test_files_written_before_the_xlevda_version_entry_still_load(trained, tmp_path):
    surrogate, y, _, encoder = trained
    encoder.save(tmp_path / "encoder.pt")
    payload = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert isinstance(payload.pop("xlevda_version"), str)
    assert len(payload.pop("sha256")) == 64  # older files: no checksum
    torch.save(payload, tmp_path / "old.pt")
    loaded = ObservationEncoder.load(tmp_path / "old.pt", surrogate, NETWORK)
    with torch.no_grad():
        torch.testing.assert_close(loaded(y), encoder(y), rtol=0, atol=0)
