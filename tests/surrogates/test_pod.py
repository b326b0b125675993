"""POD-initialized training of separable LDNets: exact identities on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.config import LDNetConfig, TrainConfig
from xlevda.surrogates.decoder_configs import MLPDecoderConfig, SeparableDecoderConfig
from xlevda.surrogates.frames import FrameBatch, TensorFrameSource
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.pod import (
    BasisFitConfig,
    PODBasis,
    coefficient_loss,
    coefficient_targets,
    fit_basis,
    load_frames,
    pod_basis,
    train_coefficients,
)
from xlevda.surrogates.schema import Affine, SurrogateSchema


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_schema(n_channels: int = 2, n_frames: int = 4) -> SurrogateSchema:
    names = tuple(f"v{c}" for c in range(n_channels))
    return SurrogateSchema(
        variables=names,
        variable_attrs=({},) * n_channels,
        output_norm=Affine((0.0,) * n_channels, (1.0,) * n_channels),
        coords=("x", "y"),
        coord_attrs=({}, {}),
        coord_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        params=("a",),
        param_attrs=({},),
        param_norm=Affine((0.0,), (1.0,)),
        param_range=((-1.0, 1.0),),
        time_origin="0",
        time_step=1.0,
        time_units="s",
        time_is_datetime=False,
        n_frames=n_frames,
    )


def make_model(n_basis: int = 6, dtype=torch.float64, n_channels: int = 2) -> LDNetModel:
    dec = SeparableDecoderConfig(
        n_basis=n_basis, basis_width=32, basis_depth=2, coef_width=16, coef_depth=2, n_fourier=8
    )
    cfg = LDNetConfig(latent_dim=3, dynamics_width=8, dynamics_depth=2, decoder=dec)
    return LDNetModel(cfg, make_schema(n_channels), dtype=dtype)


def grid(n: int = 8) -> torch.Tensor:
    x = torch.linspace(-1, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    return torch.stack([yy.ravel(), xx.ravel()], -1)  # (n * n, 2)


def smooth_modes(points: torch.Tensor) -> torch.Tensor:
    """Three smooth, linearly independent, zero-mean fields at ``points`` (P, 3)."""
    y, x = points[:, 0], points[:, 1]
    fields = torch.stack([torch.sin(torch.pi * x), y * x, torch.cos(torch.pi * y)], -1)
    return fields - fields.mean(0)


def low_rank_values(points: torch.Tensor, n_runs: int = 5, n_frames: int = 4, seed: int = 0):
    """(N, T, P, C=2) frames: random combinations of the smooth modes plus constants."""
    gen = torch.Generator().manual_seed(seed)
    modes = smooth_modes(points)
    coef = torch.randn(n_runs, n_frames, 3, 2, generator=gen, dtype=torch.float64)
    const = torch.randn(n_runs, n_frames, 1, 2, generator=gen, dtype=torch.float64)
    return torch.einsum("pk,ntkc->ntpc", modes, coef) + const


# ------------------------------------------------------------------------------- frames


def test_load_frames_returns_every_run_in_order():
    gen = torch.Generator().manual_seed(1)
    params, points = torch.randn(7, 1, generator=gen), torch.randn(10, 2, generator=gen)
    values = torch.randn(7, 3, 10, 2, generator=gen)
    u, p, x = load_frames(TensorFrameSource(params, points, values))
    assert torch.equal(u, params) and torch.equal(p, points) and torch.equal(x, values)


def test_load_frames_rejects_points_that_vary_per_frame():
    class PerFrame:
        n_runs, n_frames = 2, 3

        def batches(self, batch_size, points_per_frame, generator, shuffle):
            yield FrameBatch(torch.zeros(2, 1), torch.zeros(3, 5, 2), torch.zeros(2, 3, 5, 1))

    with pytest.raises(ShapeError, match=r"share one point set .*\(3, 5, 2\)"):
        load_frames(PerFrame())


# ---------------------------------------------------------------------------------- POD


def test_pod_of_exactly_low_rank_data_is_exact_and_orthonormal():
    points = grid()
    values = low_rank_values(points)
    basis = pod_basis(values, 3)
    modes = basis.modes
    assert modes.shape == (64, 3) and basis.scales.shape == (3,)
    torch.testing.assert_close(modes.T @ modes, torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(modes.sum(0), torch.zeros(3, dtype=torch.float64))
    assert (basis.scales.diff() <= 0).all()
    with_const = torch.cat([modes, torch.ones(64, 1, dtype=torch.float64)], 1)
    residual = coefficient_targets(values, with_const).residual
    assert float(residual.abs().max()) < 1e-10  # round-off of O(1) data
    # scales are the root mean square of the spatially centred snapshots' coefficients
    snaps = values.permute(0, 1, 3, 2).reshape(-1, 64)
    coef = (snaps - snaps.mean(1, keepdim=True)) @ modes
    torch.testing.assert_close(coef.square().mean(0).sqrt(), basis.scales)
    # the span is the span of the generating modes
    gen_modes = smooth_modes(points)
    proj = modes @ (modes.T @ gen_modes)
    torch.testing.assert_close(proj, gen_modes)


def test_pod_residual_is_the_sum_of_the_discarded_covariance_eigenvalues():
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(3, 4, 12, 2, generator=gen, dtype=torch.float64)
    snaps = values.permute(0, 1, 3, 2).reshape(-1, 12).numpy()
    snaps = snaps - snaps.mean(1, keepdims=True)
    eig = np.sort(np.linalg.eigvalsh(snaps.T @ snaps))[::-1]
    for rank in (1, 4, 9):
        modes = pod_basis(values, rank).modes
        g = torch.cat([modes, torch.ones(12, 1, dtype=torch.float64)], 1)
        residual = float(coefficient_targets(values, g).residual.sum())
        np.testing.assert_allclose(residual, eig[rank:].sum(), rtol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), rank=st.integers(1, 5))
def test_pod_beats_any_other_basis_of_the_same_size(seed, rank):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(2, 3, 9, 2, generator=gen, dtype=torch.float64)
    ones = torch.ones(9, 1, dtype=torch.float64)
    pod = torch.cat([pod_basis(values, rank).modes, ones], 1)
    other = torch.cat([torch.randn(9, rank, generator=gen, dtype=torch.float64), ones], 1)
    best = float(coefficient_targets(values, pod).residual.sum())
    assert best <= float(coefficient_targets(values, other).residual.sum()) + 1e-9


def test_pod_basis_errors():
    values = torch.zeros(1, 2, 5, 1)
    with pytest.raises(ConfigError, match=r"rank must be an integer in \[1, 2\].*got 3"):
        pod_basis(values, 3)
    with pytest.raises(ConfigError, match=r"rank .* got 0"):
        pod_basis(values, 0)
    with pytest.raises(ShapeError, match=r"values must have shape \(N, T, P, C\).*\(2, 5\)"):
        pod_basis(torch.zeros(2, 5), 1)


# ------------------------------------------------------------------- coefficient targets


def test_coefficient_targets_split_the_field_error_exactly():
    gen = torch.Generator().manual_seed(4)
    values = torch.randn(3, 2, 10, 2, generator=gen, dtype=torch.float64)
    g = torch.randn(10, 4, generator=gen, dtype=torch.float64)  # not orthogonal
    ct = coefficient_targets(values, g)
    # the residual is the least-squares residual (numpy reference, per frame and channel)
    x = values.permute(2, 0, 1, 3).reshape(10, -1).numpy()
    sol, *_ = np.linalg.lstsq(g.numpy(), x, rcond=None)
    ref = ((x - g.numpy() @ sol) ** 2).reshape(10, 3, -1).sum((0, 2))
    np.testing.assert_allclose(ct.residual.numpy(), ref, rtol=1e-10)
    # ||G c - x||^2 = ||R c - Q^T x||^2 + residual for any coefficients c
    c = torch.randn(3, 2, 4, 2, generator=gen, dtype=torch.float64)
    field = (torch.einsum("pk,ntkc->ntpc", g, c) - values).square().sum()
    coef = (torch.einsum("jk,ntkc->ntjc", ct.r_factor, c) - ct.targets).square().sum()
    torch.testing.assert_close(field, coef + ct.residual.sum())
    assert ct.n_points == 10


def test_coefficient_targets_errors():
    with pytest.raises(ShapeError, match=r"prepared must have shape \(P=5, K\), got \(4, 2\)"):
        coefficient_targets(torch.zeros(1, 1, 5, 1), torch.zeros(4, 2))
    with pytest.raises(ShapeError, match=r"more basis functions \(K=6\) than points \(P=5\)"):
        coefficient_targets(torch.zeros(1, 1, 5, 1), torch.zeros(5, 6))


def test_coefficient_loss_is_field_mse_minus_truncation_residual():
    model = make_model()
    points = grid(5)
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(3, 1, generator=gen, dtype=torch.float64)
    values = torch.randn(3, 4, 25, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        prepared = model.decoder.basis_points(points)
        ct = coefficient_targets(values, prepared)
        field_mse = (model(u, points, 4) - values).square().mean()
        loss = coefficient_loss(model, u, ct.r_factor, ct.targets, ct.n_points)
    torch.testing.assert_close(loss, field_mse - ct.residual.sum() / values.numel())


# ---------------------------------------------------------------------------- basis fit


def test_fit_basis_reproduces_a_smooth_low_rank_field():
    points = grid()
    values = low_rank_values(points, seed=6)
    basis = pod_basis(values, 3)
    model = make_model(n_basis=4)
    with torch.no_grad():
        before = coefficient_targets(values, model.decoder.basis_points(points)).residual.sum()
    losses = fit_basis(model, points, basis, BasisFitConfig(steps=300, lr=1e-2))
    with torch.no_grad():
        prepared = model.decoder.basis_points(points)
    after = coefficient_targets(values, prepared).residual.sum()
    rel = float((after / values.square().sum()).sqrt())
    assert losses[-1] < 1e-4 * losses[0] and rel < 0.01 and after < 1e-3 * before
    # the fitted functions are the modes scaled by their coefficients' size, so that the
    # frames' coefficients in the fitted basis have unit root mean square
    target = basis.modes * basis.scales
    torch.testing.assert_close(prepared[:, :3], target, atol=0.01 * target.abs().max(), rtol=0)
    coef = torch.linalg.lstsq(prepared, values.permute(2, 0, 1, 3).reshape(64, -1)).solution
    rms = coef[:3].square().mean(1).sqrt()
    torch.testing.assert_close(rms, torch.ones(3, dtype=torch.float64), atol=0.02, rtol=0)


def test_fit_basis_trains_only_the_basis_network():
    model = make_model()
    points = grid(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    basis = pod_basis(low_rank_values(points), 2)
    fit_basis(model, points, basis, BasisFitConfig(steps=3))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("decoder.basis.") for k in changed)


def test_fit_basis_errors():
    model = make_model(n_basis=2)
    points = grid(4)
    modes = torch.zeros(16, 3, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"3 modes but the decoder only n_basis=2"):
        fit_basis(model, points, PODBasis(modes, torch.ones(3)))
    with pytest.raises(ShapeError, match=r"modes \(15, 2\) .* \(P=16, r\)"):
        fit_basis(model, points, PODBasis(modes[:15, :2], torch.ones(2)))
    with pytest.raises(ShapeError, match=r"points must have shape \(P, 2\), got \(16, 3\)"):
        fit_basis(model, torch.zeros(16, 3), PODBasis(modes[:, :2], torch.ones(2)))
    cfg = LDNetConfig(decoder=MLPDecoderConfig(width=8, depth=1, n_fourier=4))
    mlp = LDNetModel(cfg, make_schema())
    with pytest.raises(ConfigError, match=r"separable decoder .* got MLPDecoder"):
        fit_basis(mlp, points, PODBasis(modes[:, :2], torch.ones(2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 0}, r"BasisFitConfig.steps must be an integer >= 1, got 0"),
        ({"lr": -1.0}, r"BasisFitConfig.lr must be a finite number in \(0.0, inf\), got -1.0"),
        ({"lr_min_factor": 2.0}, r"BasisFitConfig.lr_min_factor .* \[0.0, 1.0\], got 2.0"),
    ],
)
def test_basis_fit_config_validates(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BasisFitConfig(**kwargs)


# ----------------------------------------------------------------- coefficient training


def test_train_coefficients_lowers_the_error_above_truncation_without_touching_the_basis():
    model = make_model(n_basis=4)
    points = grid(6)
    gen = torch.Generator().manual_seed(7)
    u = torch.rand(6, 1, generator=gen, dtype=torch.float64) * 2 - 1
    t = torch.arange(4, dtype=torch.float64)
    amp = torch.stack([u[:, 0, None] * (1 + 0.3 * t), torch.sin(u[:, 0, None] + 0.5 * t)], -1)
    values = torch.einsum("pk,ntk->ntp", smooth_modes(points)[:, :2], amp)[..., None]
    values = torch.cat([values, -values], -1)  # two channels
    with torch.no_grad():
        prepared = model.decoder.basis_points(points)
    ct = coefficient_targets(values, prepared)
    basis_before = {k: v.clone() for k, v in model.decoder.basis.state_dict().items()}
    truncation = float(ct.residual.sum()) / values.numel()
    with torch.no_grad():
        excess_before = float((model(u, points, 4) - values).square().mean()) - truncation
    losses = train_coefficients(model, u, ct, TrainConfig(epochs=60, batch_size=3, lr=1e-2, seed=0))
    with torch.no_grad():
        field_after = float((model(u, points, 4) - values).square().mean())
    assert len(losses) == 60 and losses[-1] < 0.2 * losses[0]
    assert field_after - truncation < 0.2 * excess_before
    for k, v in model.decoder.basis.state_dict().items():
        assert torch.equal(v, basis_before[k])
    with torch.no_grad():
        last = coefficient_loss(model, u, ct.r_factor, ct.targets, ct.n_points)
    np.testing.assert_allclose(field_after, float(last) + truncation, rtol=1e-9)


def test_train_coefficients_errors():
    model = make_model()
    ct = coefficient_targets(torch.zeros(3, 4, 16, 2, dtype=torch.float64), torch.eye(16)[:, :7])
    with pytest.raises(ShapeError, match=r"params must have shape \(N=3, d_u\), got \(2, 1\)"):
        train_coefficients(model, torch.zeros(2, 1), ct, TrainConfig(epochs=1))
    bad = coefficient_targets(torch.zeros(3, 4, 16, 2, dtype=torch.float64), torch.eye(16)[:, :5])
    with pytest.raises(ShapeError, match=r"K = n_basis \+ 1 = 7 .* targets \(3, 4, 5, 2\)"):
        train_coefficients(model, torch.zeros(3, 1), bad, TrainConfig(epochs=1))
