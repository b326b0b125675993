"""The closed-form linear LDNet: cosine decoder, impulse-driven linear field, exact fit, files."""

from __future__ import annotations

import copy
import itertools
import json
import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xlevda
from tests.surrogates.test_ldnet_model import make_schema
from xlevda.core.dynamics import euler_rollout
from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.config import (
    LDNetConfig,
    LinearDynamicsConfig,
    PolynomialDynamicsConfig,
    config_from_dict,
    config_to_dict,
)
from xlevda.surrogates.decoder_configs import CosineDecoderConfig, MLPDecoderConfig
from xlevda.surrogates.decoders import CosineDecoder
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.linear import fit_linear, point_box
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.vector_fields import ImpulseLinearField
from xlevda.systems import tsunami

F64 = torch.float64


def cosine_features(points: torch.Tensor, lo, hi, n_terms: int) -> torch.Tensor:
    """Reference features: explicit products of cosines, coordinate 0 slowest."""
    cols = []
    for ms in itertools.product(range(n_terms), repeat=points.shape[-1]):
        col = torch.ones(points.shape[:-1], dtype=points.dtype)
        for j, m in enumerate(ms):
            col = col * torch.cos(m * math.pi * (points[..., j] - lo[j]) / (hi[j] - lo[j]))
        cols.append(col)
    return torch.stack(cols, -1)


def random_decoder(latent_dim=3, n_coords=2, n_channels=2, n_terms=3, seed=0) -> CosineDecoder:
    gen = torch.Generator().manual_seed(seed)
    dec = CosineDecoder(latent_dim, n_coords, n_channels, n_terms).double()
    with torch.no_grad():
        dec.weight.copy_(torch.randn(dec.weight.shape, generator=gen, dtype=F64))
        dec.lo.copy_(-1.0 - torch.rand(n_coords, generator=gen, dtype=F64))
        dec.hi.copy_(1.0 + torch.rand(n_coords, generator=gen, dtype=F64))
    return dec


def random_field(latent_dim=4, param_dim=2, n_centres=5, dt=0.25, seed=0) -> ImpulseLinearField:
    gen = torch.Generator().manual_seed(seed)
    field = ImpulseLinearField(latent_dim, param_dim, n_centres, dt).double()
    with torch.no_grad():
        for p in (field.A, field.a, field.weights, field.centres):
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
        field.width.fill_(0.8)
    return field


# ----------------------------------------------------------------------------- CosineDecoder


def test_cosine_decode_prepared_and_channel_equal_forward():
    """decode_prepared(s, prepare_points(p)) == forward(s, p); decode_channel is one channel."""
    dec = random_decoder()
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(4, 3, generator=gen, dtype=F64)
    p = torch.randn(7, 2, generator=gen, dtype=F64)
    out = dec(s, p)
    assert out.shape == (4, 7, 2)
    prepared = dec.prepare_points(p)
    assert prepared.shape == (7, 2 * 4)
    torch.testing.assert_close(dec.decode_prepared(s, prepared), out, rtol=1e-14, atol=1e-14)
    for c in range(2):
        torch.testing.assert_close(dec.decode_channel(s, prepared, c), out[..., c])
    # the explicit formula b(xi) + sum_k s_k psi_k(xi) with the reference features
    feats = cosine_features(p, dec.lo, dec.hi, 3)  # (P, F)
    fields = torch.einsum("pf,ckf->pck", feats, dec.weight.detach())  # (P, C, d_s + 1)
    expected = torch.einsum("pck,nk->npc", fields[..., :-1], s) + fields[..., -1]
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_cosine_decoder_broadcasts_leading_dims():
    """s (K, 1, d) against points (T, P, n) decodes to (K, T, P, C), each pair as alone."""
    dec = random_decoder()
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(3, 1, 3, generator=gen, dtype=F64)
    p = torch.randn(4, 5, 2, generator=gen, dtype=F64)
    out = dec(s, p)
    assert out.shape == (3, 4, 5, 2)
    prepared = dec.prepare_points(p)
    assert dec.decode_channel(s, prepared, 1).shape == (3, 4, 5)
    for k, t in itertools.product(range(3), range(4)):
        torch.testing.assert_close(out[k, t], dec(s[k, 0], p[t]), rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(
            dec.decode_channel(s, prepared, 1)[k, t], out[k, t, :, 1], rtol=1e-14, atol=1e-14
        )


@pytest.mark.parametrize("n_coords", [1, 2, 3])
def test_cosine_features_are_explicit_cosine_products(n_coords):
    """features() equals prod_j cos(m_j pi (x_j - lo_j) / (hi_j - lo_j)), coordinate 0 slowest."""
    dec = random_decoder(n_coords=n_coords, n_terms=3)
    p = torch.randn(2, 6, n_coords, generator=torch.Generator().manual_seed(3), dtype=F64)
    feats = dec.features(p)
    assert feats.shape == (2, 6, 3**n_coords)
    torch.testing.assert_close(feats, cosine_features(p, dec.lo, dec.hi, 3), rtol=0, atol=1e-14)
    # index of (m_0, ..., m_{n-1}) is sum_j m_j 3^(n-1-j): check one term by hand
    m = (2, 1, 0)[:n_coords]
    index = sum(mj * 3 ** (n_coords - 1 - j) for j, mj in enumerate(m))
    by_hand = torch.ones(2, 6, dtype=F64)
    for j, mj in enumerate(m):
        by_hand = by_hand * torch.cos(
            mj * math.pi * (p[..., j] - dec.lo[j]) / (dec.hi[j] - dec.lo[j])
        )
    torch.testing.assert_close(feats[..., index], by_hand, rtol=0, atol=1e-14)
    assert torch.equal(feats[..., 0], torch.ones(2, 6, dtype=F64))


@settings(max_examples=20, deadline=None)
@given(
    alpha=st.floats(-3, 3),
    beta=st.floats(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_cosine_decoder_is_affine_in_s(alpha, beta, seed):
    """D(a s1 + b s2) - D(0) == a (D(s1) - D(0)) + b (D(s2) - D(0)), D(0) the mean field."""
    dec = random_decoder(seed=seed % 7)
    gen = torch.Generator().manual_seed(seed)
    s1, s2 = torch.randn(2, 3, generator=gen, dtype=F64)
    p = torch.randn(6, 2, generator=gen, dtype=F64)
    base = dec(torch.zeros(3, dtype=F64), p)
    lhs = dec(alpha * s1 + beta * s2, p) - base
    rhs = alpha * (dec(s1, p) - base) + beta * (dec(s2, p) - base)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    mean_field = torch.einsum(
        "pf,cf->pc", cosine_features(p, dec.lo, dec.hi, 3), dec.weight.detach()[:, -1]
    )
    torch.testing.assert_close(base, mean_field, rtol=1e-12, atol=1e-12)


def test_cosine_decoder_gradcheck():
    """Float64 gradcheck of decode w.r.t. the state and the points, and of decode_channel."""
    dec = random_decoder()
    for p in dec.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(2, 3, generator=gen, dtype=F64, requires_grad=True)
    p = torch.randn(2, 4, 2, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, p: dec(s, p), (s, p))
    assert torch.autograd.gradcheck(
        lambda s, p: dec.decode_channel(s, dec.prepare_points(p), 0), (s, p)
    )


def test_cosine_decoder_shape_errors():
    """Wrong last dimensions of s, points and prepared points raise ShapeError."""
    dec = random_decoder()
    p = torch.zeros(5, 2, dtype=F64)
    with pytest.raises(ShapeError, match=r"s must have last dimension 3, got shape \(4, 2\)"):
        dec(torch.zeros(4, 2, dtype=F64), p)
    with pytest.raises(ShapeError, match=r"points must have last dimension 2, got shape \(5, 3\)"):
        dec(torch.zeros(3, dtype=F64), torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ShapeError, match=r"last dimension C \(d_s \+ 1\) = 8, got shape \(5, 7\)"):
        dec.decode_prepared(torch.zeros(3, dtype=F64), torch.zeros(5, 7, dtype=F64))
    with pytest.raises(ShapeError, match=r"last dimension C \(d_s \+ 1\) = 8, got shape \(\)"):
        dec.decode_channel(torch.zeros(3, dtype=F64), torch.tensor(0.0, dtype=F64), 0)
    with pytest.raises(ShapeError, match="s must have last dimension 3"):
        dec.decode_channel(torch.zeros(2, dtype=F64), dec.prepare_points(p), 0)


# ----------------------------------------------------------------------------- ImpulseLinearField


def test_impulse_is_a_gaussian_rbf_net():
    """g(u) = sum_i w_i exp(-|u - u_i|^2 / (2 l^2)), broadcast over leading dims."""
    field = random_field()
    u = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    g = field.impulse(u)
    assert g.shape == (3, 2, 3)
    w, cen, ell = field.weights.detach(), field.centres, float(field.width)
    for idx in itertools.product(range(3), range(2)):
        expected = sum(
            w[i] * math.exp(-float((u[idx] - cen[i]).square().sum()) / (2 * ell**2))
            for i in range(cen.shape[0])
        )
        torch.testing.assert_close(g[idx], expected, rtol=1e-13, atol=1e-13)


def test_impulse_field_first_step_then_linear_recurrence():
    """From s_-1 = 0: kappa_0 = 1, c_0 = dt g(u), then c_{k+1} = (I + dt A) c_k + dt a."""
    field = random_field(dt=0.25)
    dt = field.step
    u = torch.randn(3, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    s, _ = euler_rollout(field, torch.zeros(3, 4, dtype=F64), u, dt, 6)
    assert s.shape == (3, 7, 4)
    assert torch.equal(s[:, 1:, -1], torch.ones(3, 6, dtype=F64))  # the clock is exactly 1
    with torch.no_grad():
        torch.testing.assert_close(s[:, 1, :-1], dt * field.impulse(u), rtol=1e-14, atol=1e-14)
        step = torch.eye(3, dtype=F64) + dt * field.A
        c = s[:, 1, :-1]
        for k in range(2, 7):
            c = c @ step.T + dt * field.a
            torch.testing.assert_close(s[:, k, :-1], c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_impulse_clock_reaches_one_for_many_steps(dtype):
    """For dt = 1 / n (n = 1..60) one step sets kappa to 1 within one ulp."""
    for n in range(1, 61):
        field = ImpulseLinearField(3, 1, 2, 1.0 / n).to(dtype)
        s = torch.zeros(3, dtype=dtype)
        with torch.no_grad():
            kappa = (s + field.step * field(s, torch.zeros(1, dtype=dtype)))[-1]
        assert abs(float(kappa) - 1) <= torch.finfo(dtype).eps, n


def test_impulse_off_once_clock_is_one():
    """With kappa = 1 the field is (A c + a, 0) whatever u and the weights."""
    field = random_field()
    gen = torch.Generator().manual_seed(7)
    c = torch.randn(5, 3, generator=gen, dtype=F64)
    s = torch.cat([c, torch.ones(5, 1, dtype=F64)], -1)
    u1, u2 = torch.randn(2, 5, 2, generator=gen, dtype=F64)
    with torch.no_grad():
        f1 = field(s, u1)
        field.weights.mul_(100.0)
        f2 = field(s, u2)
        expected = c @ field.A.T + field.a
    assert torch.equal(f1, f2)
    torch.testing.assert_close(f1[:, :-1], expected, rtol=1e-14, atol=1e-14)
    assert torch.equal(f1[:, -1], torch.zeros(5, dtype=F64))


def test_impulse_field_through_ldnet_rollout():
    """LDNetModel.rollout with LinearDynamicsConfig follows the same closed-form recurrence."""
    model = linear_model(n_centres=5, n_frames=4)
    src = random_field(latent_dim=4, n_centres=5, dt=0.25)
    with torch.no_grad():
        for name in ("A", "a", "weights", "centres", "width"):
            getattr(model.dynamics, name).copy_(getattr(src, name))
    assert float(model.dt) == 0.25 and float(model.dynamics.step) == 0.25
    u = torch.randn(2, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    with torch.no_grad():
        s = model.rollout(u, 4)
        c = 0.25 * src.impulse(u)
        step = torch.eye(3, dtype=F64) + 0.25 * src.A
        for k in range(4):
            torch.testing.assert_close(s[:, k, :-1], c, rtol=1e-12, atol=1e-12)
            c = c @ step.T + 0.25 * src.a
    assert torch.equal(s[..., -1], torch.ones(2, 4, dtype=F64))


def test_impulse_field_gradcheck_and_shapes():
    """Float64 gradcheck w.r.t. s (clock included) and u; wrong shapes raise ShapeError."""
    field = random_field()
    for p in field.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(9)
    s = torch.randn(3, 4, generator=gen, dtype=F64, requires_grad=True)
    u = torch.randn(3, 2, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(field, (s, u))
    with pytest.raises(ShapeError, match=r"s must have last dimension 4, got shape \(3, 3\)"):
        field(torch.zeros(3, 3, dtype=F64), torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ShapeError, match=r"u must have last dimension 2, got shape \(3, 1\)"):
        field(torch.zeros(3, 4, dtype=F64), torch.zeros(3, 1, dtype=F64))
    with pytest.raises(ConfigError, match="ImpulseLinearField needs latent_dim >= 2"):
        ImpulseLinearField(1, 2, 3, 0.1)


# ----------------------------------------------------------------------------- fit_linear: exact

NX, NY, N_TERMS, RANK, N_FRAMES, N_CH = 5, 4, 3, 3, 5, 2
N_TRAIN, N_VAL = 7, 4
BOX_LO, BOX_HI = (-1.0, 0.0), (1.0, 2.0)
WIDTHS = (0.5, 1.0, 2.0)


def linear_model(
    n_centres,
    *,
    refit=True,
    ridge=0.0,
    widths=WIDTHS,
    latent_dim=RANK + 1,
    n_terms=N_TERMS,
    n_frames=N_FRAMES,
    dtype=F64,
    kernel="isotropic",
) -> LDNetModel:
    dyn = LinearDynamicsConfig(
        n_centres=n_centres, ridge=ridge, widths=widths, refit=refit, kernel=kernel
    )
    cfg = LDNetConfig(
        latent_dim=latent_dim,
        learnable_dt=False,
        dynamics=dyn,
        decoder=CosineDecoderConfig(n_terms=n_terms),
    )
    return LDNetModel(cfg, make_schema(n_frames=n_frames), dtype=dtype)


def grid_points() -> torch.Tensor:
    """Cell centres of an NX x NY grid on the box, (P, 2), y fastest."""
    x = BOX_LO[0] + (torch.arange(NX, dtype=F64) + 0.5) * (BOX_HI[0] - BOX_LO[0]) / NX
    y = BOX_LO[1] + (torch.arange(NY, dtype=F64) + 0.5) * (BOX_HI[1] - BOX_LO[1]) / NY
    return torch.cartesian_prod(x, y)


def first_latent(u: torch.Tensor) -> torch.Tensor:
    """c_0(u): a smooth, non-polynomial function of the two parameters."""
    a, b = u[:, 0], u[:, 1]
    return torch.stack([torch.sin(2 * a) + b, torch.cos(a + b), a * b - 0.5 * b**2], -1)


class Exact(NamedTuple):
    u: torch.Tensor  # (N_TRAIN + N_VAL, 2), training runs first
    points: torch.Tensor  # (P, 2)
    values: torch.Tensor  # (N, T, P, C)
    coef: torch.Tensor  # (N, T, C F) exact cosine coefficients
    mean: torch.Tensor  # (C F,)
    modes: torch.Tensor  # (C F, r)
    step: torch.Tensor  # M (r, r)
    offset: torch.Tensor  # m (r,)
    latent: torch.Tensor  # c (N, T, r)

    def train(self):
        return self.u[:N_TRAIN], self.points, self.values[:N_TRAIN]

    def val(self):
        return self.u[N_TRAIN:], self.points, self.values[N_TRAIN:]


def make_exact() -> Exact:
    """Frames mean + modes c_k in the cosine series, c_{k+1} = M c_k + m, c_0 = c_0(u)."""
    gen = torch.Generator().manual_seed(0)
    n_feat = N_TERMS**2
    u = 2 * torch.rand(N_TRAIN + N_VAL, 2, generator=gen, dtype=F64) - 1
    mean = torch.randn(N_CH * n_feat, generator=gen, dtype=F64)
    modes = torch.randn(N_CH * n_feat, RANK, generator=gen, dtype=F64)
    q, _ = torch.linalg.qr(torch.randn(RANK, RANK, generator=gen, dtype=F64))
    step = 0.9 * q
    offset = 0.3 * torch.randn(RANK, generator=gen, dtype=F64)
    cs = [first_latent(u)]
    for _ in range(N_FRAMES - 1):
        cs.append(cs[-1] @ step.T + offset)
    latent = torch.stack(cs, 1)
    coef = mean + latent @ modes.T
    points = grid_points()
    feats = cosine_features(points, BOX_LO, BOX_HI, N_TERMS)
    values = torch.einsum("pf,ntcf->ntpc", feats, coef.unflatten(-1, (N_CH, n_feat)))
    return Exact(u, points, values, coef, mean, modes, step, offset, latent)


@pytest.fixture(scope="module")
def exact() -> Exact:
    return make_exact()


def fitted_basis(model: LDNetModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's modes Phi (C F, r) and mean b (C F,) in cosine coefficients."""
    w = model.decoder.weight.detach()  # (C, r + 2, F): modes, clock, mean
    return w[:, :RANK].transpose(0, 1).flatten(1).T, w[:, -1].flatten()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def field_gram() -> torch.Tensor:
    """G (C F, C F): ``c^T G c`` is the squared norm over the grid of the fields of ``c``."""
    feats = cosine_features(grid_points(), BOX_LO, BOX_HI, N_TERMS)
    return torch.block_diag(*[feats.T @ feats] * N_CH)


def g_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("...i,ij,...j->...", x, field_gram(), x).sum().sqrt()


@pytest.fixture(scope="module")
def refitted(exact):
    model = linear_model(N_TRAIN + N_VAL)
    report = fit_linear(model, exact.train(), exact.val())
    return model, report


def test_exact_fit_reproduces_every_fitted_run(exact, refitted):
    """On data in the model class the refitted trajectories equal the frames to ~1e-10."""
    model, report = refitted
    for key in ("cosine_projection_error", "mode_projection_error", "linear_step_residual"):
        assert report[key] < 1e-12, (key, report[key])
    with torch.no_grad():
        pred = model(exact.u, exact.points, N_FRAMES)
    assert pred.shape == exact.values.shape
    assert rel(pred, exact.values) < 1e-10
    # the box is the grid's cells
    torch.testing.assert_close(model.decoder.lo, torch.tensor(BOX_LO, dtype=F64))
    torch.testing.assert_close(model.decoder.hi, torch.tensor(BOX_HI, dtype=F64))


def test_exact_fit_recovers_modes_mean_and_dynamics(exact, refitted):
    """Modes orthonormal over the grid span the true ones; b the mean frame; I + dt A = P M P^-1."""
    model, report = refitted
    phi, b = fitted_basis(model)
    gram = field_gram()
    torch.testing.assert_close(phi.T @ gram @ phi, torch.eye(RANK, dtype=F64), rtol=0, atol=1e-10)
    # the mode span is the true one: the true modes are reproduced by projection
    projected = phi @ (phi.T @ gram @ exact.modes)
    torch.testing.assert_close(projected, exact.modes, rtol=0, atol=1e-9)
    torch.testing.assert_close(b, exact.coef.mean(dim=(0, 1)), rtol=0, atol=1e-12)
    assert torch.equal(model.decoder.weight[:, RANK], torch.zeros(N_CH, N_TERMS**2, dtype=F64))
    # latent z = P c + q in the fitted basis
    p_mat = phi.T @ gram @ exact.modes
    q = phi.T @ gram @ (exact.mean - b)
    m_hat = p_mat @ exact.step @ torch.linalg.inv(p_mat)
    offset_hat = p_mat @ exact.offset + q - m_hat @ q
    dt = float(model.dt)
    field = model.dynamics
    with torch.no_grad():
        torch.testing.assert_close(
            torch.eye(RANK, dtype=F64) + dt * field.A, m_hat, rtol=0, atol=1e-9
        )
        torch.testing.assert_close(dt * field.a, offset_hat, rtol=0, atol=1e-9)
        eig_fit = torch.linalg.eigvals(torch.eye(RANK, dtype=F64) + dt * field.A)
    eig_true = torch.linalg.eigvals(exact.step)
    key = lambda z: (round(z.real, 6), round(z.imag, 6))  # noqa: E731
    np.testing.assert_allclose(
        sorted(eig_fit.numpy(), key=key), sorted(eig_true.numpy(), key=key), atol=1e-9
    )
    assert report["spectral_radius"] == pytest.approx(0.9, abs=1e-9)
    with torch.no_grad():
        s = model.rollout(exact.u, N_FRAMES)
    torch.testing.assert_close(s[..., :-1], exact.latent @ p_mat.T + q, rtol=0, atol=1e-9)
    torch.testing.assert_close(s[..., -1], torch.ones_like(s[..., -1]), rtol=0, atol=1e-15)


def test_exact_fit_centres_width_and_first_frame_interpolation(exact, refitted):
    """refit=True: centres are train + val parameters; with ridge 0 frame 0 interpolates them."""
    model, report = refitted
    assert torch.equal(model.dynamics.centres, exact.u)
    np.testing.assert_allclose(model.dynamics.width.tolist(), report["kernel_width"], rtol=1e-6)
    phi, b = fitted_basis(model)
    with torch.no_grad():
        z0 = model.rollout(exact.u, 1)[:, 0, :-1]
    torch.testing.assert_close(b + z0 @ phi.T, exact.coef[:, 0], rtol=0, atol=1e-9)


def test_fit_without_refit_uses_training_runs_only(exact):
    """refit=False: centres are the training parameters, interpolated exactly; val is not."""
    model = linear_model(N_TRAIN, refit=False)
    fit_linear(model, exact.train(), exact.val())
    assert torch.equal(model.dynamics.centres, exact.u[:N_TRAIN])
    _, b = fitted_basis(model)
    # the mean is that of the training frames only
    torch.testing.assert_close(b, exact.coef[:N_TRAIN].mean(dim=(0, 1)), rtol=0, atol=1e-12)
    with torch.no_grad():
        pred = model(exact.u, exact.points, N_FRAMES)
    assert rel(pred[:N_TRAIN], exact.values[:N_TRAIN]) < 1e-10
    assert rel(pred[N_TRAIN:, 0], exact.values[N_TRAIN:, 0]) > 1e-4  # a regression, not a lookup


def test_fit_checks_the_number_of_centres(exact):
    """n_centres must be the number of fitted runs, with or without the validation runs."""
    with pytest.raises(
        ConfigError,
        match=r"n_centres is 7, expected one centre per fitted run \(11: training runs plus "
        r"validation runs, refit=True\)",
    ):
        fit_linear(linear_model(N_TRAIN), exact.train(), exact.val())
    with pytest.raises(
        ConfigError,
        match=r"n_centres is 11, expected one centre per fitted run \(7: training runs\)",
    ):
        fit_linear(linear_model(N_TRAIN + N_VAL, refit=False), exact.train(), exact.val())


def _first_frame_val_error(model: LDNetModel, exact: Exact) -> float:
    """Relative error over the grid of the validation runs' first frames (all in the modes)."""
    phi, b = fitted_basis(model)
    with torch.no_grad():
        z0 = model.rollout(exact.u[N_TRAIN:], 1)[:, 0, :-1]
    truth = exact.coef[N_TRAIN:, 0]
    return float(g_norm(b + z0 @ phi.T - truth) / g_norm(truth - b))


def test_kernel_width_is_the_best_on_validation(exact, refitted):
    """The chosen width minimizes the validation first-frame error over widths (brute force)."""
    u = exact.u[:N_TRAIN].numpy()
    dist = np.linalg.norm(u[:, None] - u[None], axis=-1) + np.diag(np.full(N_TRAIN, np.inf))
    spacing = float(np.median(dist.min(axis=1)))  # N_TRAIN odd: one middle value
    errors = {}
    for factor in WIDTHS:
        model = linear_model(N_TRAIN, refit=False, widths=(factor,))
        report = fit_linear(model, exact.train(), exact.val())
        assert report["kernel_width"] == pytest.approx(factor * spacing, rel=1e-12)
        errors[factor] = _first_frame_val_error(model, exact)
        assert report["first_frame_validation_error"] == pytest.approx(errors[factor], rel=1e-8)
    best = min(errors, key=errors.__getitem__)
    assert max(errors.values()) > 1.2 * min(errors.values()), errors  # a real choice
    for refit in (False, True):
        model = linear_model(N_TRAIN + N_VAL * refit, refit=refit)
        report = fit_linear(model, exact.train(), exact.val())
        assert report["kernel_width"] == pytest.approx(best * spacing, rel=1e-12)
        assert report["first_frame_validation_error"] == pytest.approx(errors[best], rel=1e-8)
    assert refitted[1]["kernel_width"] == pytest.approx(best * spacing, rel=1e-12)


def test_fit_in_float32_model(exact):
    """A float32 model gets the float64 fit rounded: training runs within float32 accuracy."""
    model = linear_model(N_TRAIN + N_VAL, dtype=torch.float32)
    f32 = [tuple(x.float() for x in part) for part in (exact.train(), exact.val())]
    fit_linear(model, *f32)
    assert model.decoder.weight.dtype == torch.float32
    with torch.no_grad():
        pred = model(exact.u.float(), exact.points.float(), N_FRAMES)
    assert rel(pred.double(), exact.values) < 1e-4


def test_fit_rejects_bad_inputs(exact):
    """Wrong decoder, mismatched validation points, one frame, too many modes raise."""
    cfg = LDNetConfig(
        latent_dim=RANK + 1,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(n_centres=N_TRAIN + N_VAL),
        decoder=MLPDecoderConfig(width=4, depth=1, n_fourier=2),
    )
    with pytest.raises(ConfigError, match=r"fit_linear needs LDNetConfig\(dynamics="):
        fit_linear(LDNetModel(cfg, make_schema(n_frames=5)), exact.train(), exact.val())
    u_val, points, values_val = exact.val()
    with pytest.raises(ShapeError, match="must share the training runs' points and frames"):
        fit_linear(linear_model(N_TRAIN + N_VAL), exact.train(), (u_val, points + 1, values_val))
    with pytest.raises(ShapeError, match="must share the training runs' points and frames"):
        fit_linear(linear_model(N_TRAIN + N_VAL), exact.train(), (u_val, points, values_val[:, :2]))
    u, _, values = exact.train()
    with pytest.raises(ShapeError, match="needs at least 2 frames per run, got 1"):
        fit_linear(
            linear_model(N_TRAIN + N_VAL),
            (u, points, values[:, :1]),
            (u_val, points, values_val[:, :1]),
        )
    # 2 channels x 4 terms = 8 coefficients < 7 x 5 frames: at most 8 modes
    with pytest.raises(ConfigError, match=r"latent_dim - 1 = 9 modes exceed .* = 8"):
        fit_linear(
            linear_model(N_TRAIN + N_VAL, latent_dim=10, n_terms=2), exact.train(), exact.val()
        )


def test_modes_up_to_frames_minus_one_fit_exactly_and_more_are_rejected():
    """Centred frames span N T - 1 dimensions: that many modes fit exactly, one more is an error."""
    x = ((torch.arange(8, dtype=F64) + 0.5) / 8)[:, None]
    u = torch.tensor([[0.1], [0.5], [0.9]], dtype=F64)

    def model(latent_dim: int) -> LDNetModel:
        cfg = LDNetConfig(
            latent_dim=latent_dim,
            learnable_dt=False,
            dynamics=LinearDynamicsConfig(n_centres=2, ridge=0.0, refit=False),
            decoder=CosineDecoderConfig(n_terms=8),
        )
        return LDNetModel(cfg, SurrogateSchema.minimal(2), dtype=F64)

    for seed in range(8):
        frames = torch.randn(3, 2, 8, 1, generator=torch.Generator().manual_seed(seed), dtype=F64)
        train, val = (u[:2], x, frames[:2]), (u[2:], x, frames[2:])
        with pytest.raises(ConfigError, match=r"frames - 1 = 3"):
            fit_linear(model(5), train, val)
        fitted = model(4)
        fit_linear(fitted, train, val)
        with torch.no_grad():
            pred = fitted(u[:2], x, 2)
        assert torch.isfinite(fitted.decoder.weight).all()
        assert rel(pred, frames[:2]) < 1e-10


# ----------------------------------------------------------------------------- point_box


def test_point_box_on_a_cell_centred_grid_is_the_cells():
    """On a cell-centred grid the box is the cells, and the cosine features are orthogonal (DCT)."""
    points = grid_points()
    lo, hi = point_box(points)
    torch.testing.assert_close(lo, torch.tensor(BOX_LO, dtype=F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(hi, torch.tensor(BOX_HI, dtype=F64), rtol=0, atol=1e-15)
    dec = CosineDecoder(2, 2, 1, n_terms=4).double()
    dec.lo.copy_(lo)
    dec.hi.copy_(hi)
    feats = dec.features(points)
    gram = feats.T @ feats
    # DCT-II with 4 terms on 5 and 4 cells: orthogonal columns of norm^2 P / 2^(#nonzero m)
    m_x, m_y = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    m_x, m_y = m_x.flatten(), m_y.flatten()
    expected = 20.0 / 2.0 ** ((m_x > 0).double() + (m_y > 0).double())
    torch.testing.assert_close(gram, torch.diag(expected), rtol=0, atol=1e-12)


def test_point_box_on_irregular_values():
    """Unsorted, repeated, irregular values: widened by half the outermost gaps; dtype kept."""
    points = torch.tensor(
        [[3.0, 1.0], [0.0, 1.0], [7.0, 2.0], [1.0, 1.0], [3.0, -4.0]], dtype=torch.float32
    )
    lo, hi = point_box(points)
    assert lo.dtype == hi.dtype == torch.float32
    assert lo.tolist() == [-0.5, -6.5] and hi.tolist() == [9.0, 2.5]
    lo, hi = point_box(torch.tensor([[0.1], [0.3]], dtype=F64))
    assert lo.tolist() == pytest.approx([0.0], abs=1e-15)
    assert hi.tolist() == pytest.approx([0.4], abs=1e-15)


def test_point_box_errors():
    """A constant coordinate or fewer than two points raise ShapeError."""
    with pytest.raises(
        ShapeError, match="coordinate 1 of the training points takes a single value"
    ):
        point_box(torch.tensor([[0.0, 2.0], [1.0, 2.0], [3.0, 2.0]]))
    with pytest.raises(ShapeError, match=r"points must have shape \(P >= 2, n_coords\)"):
        point_box(torch.zeros(1, 2))
    with pytest.raises(ShapeError, match=r"points must have shape \(P >= 2, n_coords\)"):
        point_box(torch.zeros(4))


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_centres": 0}, r"LinearDynamicsConfig.n_centres must be an integer >= 1, got 0"),
        ({"n_centres": 2.0}, r"LinearDynamicsConfig.n_centres must be an integer >= 1"),
        ({"n_centres": True}, r"LinearDynamicsConfig.n_centres must be an integer >= 1"),
        ({"ridge": -1e-9}, r"LinearDynamicsConfig.ridge must be a finite number in \[0.0, inf\)"),
        ({"ridge": math.nan}, r"LinearDynamicsConfig.ridge must be a finite number"),
        ({"widths": ()}, r"LinearDynamicsConfig.widths must be a non-empty tuple, got \(\)"),
        ({"widths": 1.0}, r"LinearDynamicsConfig.widths must be a non-empty tuple, got 1.0"),
        ({"widths": (1.0, 0.0)}, r"widths\[...\] must be a finite number in \(0.0, inf\)"),
        ({"widths": (1.0, math.inf)}, r"widths\[...\] must be a finite number"),
        ({"refit": 1}, r"LinearDynamicsConfig.refit must be a bool, got 1"),
    ],
)
def test_linear_dynamics_config_rejects_bad_values(kwargs, match):
    """Each invalid LinearDynamicsConfig field raises ConfigError naming it."""
    with pytest.raises(ConfigError, match=match):
        LinearDynamicsConfig(**kwargs)


def test_configs_accept_and_normalize_good_values():
    """Lists of widths become tuples; ridge 0 and n_centres None are allowed."""
    cfg = LinearDynamicsConfig(n_centres=None, ridge=0, widths=[1, 2.5])
    assert cfg.widths == (1, 2.5) and isinstance(cfg.widths, tuple)
    assert CosineDecoderConfig(n_terms=1).kind == "cosine"
    with pytest.raises(ConfigError, match=r"CosineDecoderConfig.n_terms must be an integer >= 1"):
        CosineDecoderConfig(n_terms=0)
    with pytest.raises(ConfigError, match=r"CosineDecoderConfig.kind must be one of"):
        CosineDecoderConfig(kind="mlp")  # type: ignore[arg-type]


def test_ldnet_config_with_linear_dynamics_checks():
    """dynamics needs learnable_dt=False, latent_dim >= 2, a LinearDynamicsConfig, n_centres."""
    dyn = LinearDynamicsConfig(n_centres=3)
    with pytest.raises(ConfigError, match="learnable_dt must be False with LinearDynamicsConfig"):
        LDNetConfig(dynamics=dyn, learnable_dt=True)
    assert LDNetConfig(dynamics=dyn).learnable_dt is False  # the default follows dynamics
    with pytest.raises(ConfigError, match="latent_dim must be >= 2 with LinearDynamicsConfig"):
        LDNetConfig(latent_dim=1, learnable_dt=False, dynamics=dyn)
    with pytest.raises(ConfigError, match="dynamics must be None or a LinearDynamicsConfig"):
        LDNetConfig(learnable_dt=False, dynamics={"n_centres": 3})  # type: ignore[arg-type]
    cfg = LDNetConfig(latent_dim=4, dynamics=LinearDynamicsConfig())
    with pytest.raises(ConfigError, match=r"LinearDynamicsConfig.n_centres is None"):
        LDNetModel(cfg, make_schema(n_frames=5))
    with pytest.raises(ConfigError, match=r"LDNetConfig.latent_dim is None: give it"):
        LDNetModel(LDNetConfig(dynamics=LinearDynamicsConfig(n_centres=3)), make_schema(n_frames=5))
    sized = LDNetConfig(latent_dim=4, dynamics=LinearDynamicsConfig(n_centres=3))
    with pytest.raises(ConfigError, match=r"CosineDecoderConfig.n_terms is None: give the"):
        LDNetModel(sized, make_schema(n_frames=5))
    with pytest.raises(ConfigError, match=r"LDNetConfig.dynamics has unknown keys \['centres'\]"):
        config_from_dict({"learnable_dt": False, "dynamics": {"centres": 3}})
    with pytest.raises(ConfigError, match=r"decoder.kind must be one of .*'cosine'"):
        config_from_dict({"decoder": {"kind": "fourier"}})


@settings(max_examples=25, deadline=None)
@given(
    n_terms=st.integers(1, 64),
    n_centres=st.none() | st.integers(1, 500),
    ridge=st.floats(0, 1e3),
    widths=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=5).map(tuple),
    refit=st.booleans(),
    latent_dim=st.integers(2, 50),
)
def test_config_dict_round_trip(n_terms, n_centres, ridge, widths, refit, latent_dim):
    """config_from_dict(config_to_dict(cfg)) == cfg, also through JSON (tuples become lists)."""
    cfg = LDNetConfig(
        latent_dim=latent_dim,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(n_centres=n_centres, ridge=ridge, widths=widths, refit=refit),
        decoder=CosineDecoderConfig(n_terms=n_terms),
    )
    data = config_to_dict(cfg)
    assert data["decoder"]["kind"] == "cosine"
    assert config_from_dict(data) == cfg
    assert config_from_dict(json.loads(json.dumps(data))) == cfg
    plain = LDNetConfig(decoder=MLPDecoderConfig())
    assert plain.dynamics is None and config_from_dict(config_to_dict(plain)) == plain
    default = LDNetConfig()
    assert isinstance(default.dynamics, PolynomialDynamicsConfig) and default.latent_dim is None
    assert config_from_dict(config_to_dict(default)) == default


# ----------------------------------------------------------------------------- save(half=...)


def random_linear_model(dtype=torch.float32) -> LDNetModel:
    model = linear_model(4, n_frames=4, dtype=dtype)
    gen = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for t in (*model.parameters(), model.dynamics.centres):
            t.copy_(torch.randn(t.shape, generator=gen, dtype=F64))
        model.dynamics.width.fill_(0.7)
    return model


def test_save_half_round_trip_equals_float16_rounded_weights(tmp_path):
    """Loaded predictions equal those of the model with the named tensors rounded to float16."""
    model = random_linear_model()
    names = ["decoder.weight", "dynamics.weights"]
    path = tmp_path / "half.pt"
    model.save(path, half=names)
    assert "half" not in model.metadata  # only the file records it
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert {k for k, v in stored.items() if v.dtype == torch.float16} == set(names)
    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for name in names:
            t = rounded.get_parameter(name)
            t.copy_(t.half().float())
    assert not torch.equal(rounded.decoder.weight, model.decoder.weight)  # rounding happened
    u = torch.randn(3, 2, generator=torch.Generator().manual_seed(13))
    points = torch.rand(6, 2, generator=torch.Generator().manual_seed(14))
    for loaded in (xlevda.load_surrogate(path), LDNetModel.load(path)):
        assert loaded.metadata["half"] == names
        assert all(v.dtype == torch.float32 for v in loaded.state_dict().values())
        with torch.no_grad():
            assert torch.equal(loaded(u, points, 4), rounded(u, points, 4))


def test_save_half_float64_model_and_full_precision_names(tmp_path):
    """A float64 model loads its half entries back as float64; other entries stay exact."""
    model = random_linear_model(F64)
    path = tmp_path / "half64.pt"
    model.save(path, half=("dynamics.A",))
    loaded = LDNetModel.load(path)
    assert loaded.metadata["half"] == ["dynamics.A"]
    assert loaded.dynamics.A.dtype == F64
    assert torch.equal(loaded.dynamics.A, model.dynamics.A.half().double())
    for name, value in model.state_dict().items():
        if name != "dynamics.A":
            assert torch.equal(loaded.state_dict()[name], value), name


def test_save_half_rejects_unknown_and_non_float_names(tmp_path):
    """Unknown or non-floating names raise ConfigError and write nothing."""
    model = random_linear_model()
    path = tmp_path / "bad.pt"
    with pytest.raises(
        ConfigError, match=r"half names \['nope'\], not floating state-dict entries"
    ):
        model.save(path, half=["decoder.weight", "nope"])
    model.register_buffer("counter", torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"half names \['counter'\]"):
        model.save(path, half=["counter"])
    with pytest.raises(ConfigError, match=r"half must be a sequence of state-dict names"):
        model.save(path, half="decoder.weight")
    with torch.no_grad():
        model.decoder.weight[0, 0, 0] = float("nan")
    with pytest.raises(ConfigError, match=r"'decoder.weight' holds NaN or infinite values"):
        model.save(path, half=["decoder.weight"])
    assert not path.exists()


def test_fit_rejects_more_cosine_terms_than_points_and_wrong_channels(exact):
    """More cosine products than training points, or frames with another channel count than
    the schema's, raise before anything is fitted; the box is left as it was."""
    model = linear_model(N_TRAIN + N_VAL, n_terms=N_TERMS + 3)
    lo = model.decoder.lo.clone()
    with pytest.raises(ConfigError, match=r"more than the 20 training points"):
        fit_linear(model, exact.train(), exact.val())
    assert torch.equal(model.decoder.lo, lo)
    u, points, values = exact.train()
    u_val, _, values_val = exact.val()
    with pytest.raises(ShapeError, match=r"have 1 channels, the model's schema 2"):
        fit_linear(
            linear_model(N_TRAIN + N_VAL),
            (u, points, values[..., :1]),
            (u_val, points, values_val[..., :1]),
        )


# ----------------------------------------------------------------------------- LDNet.fit end to end


@pytest.fixture(scope="module")
def tsunami_runs():
    cfg = tsunami.TsunamiConfig(nx=8, ny=8, n_frames=6)
    return tsunami.simulate(**tsunami.sample_sources(10, seed=0, config=cfg), config=cfg)


def linear_ldnet_config(refit=True, latent_dim=48) -> LDNetConfig:
    return LDNetConfig(
        latent_dim=latent_dim,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(refit=refit),
        decoder=CosineDecoderConfig(n_terms=8),
    )


@pytest.fixture(scope="module")
def tsunami_model(tsunami_runs):
    return xlevda.LDNet.fit(tsunami_runs, ["src_lat", "src_lon"], linear_ldnet_config())


def test_ldnet_fit_closed_form_on_tsunami(tsunami_runs, tsunami_model):
    """LDNet.fit with LinearDynamicsConfig: report, one centre per run, small training error."""
    model = tsunami_model
    assert isinstance(model, xlevda.LDNet) and model.history is None
    report = model.metadata["linear_fit"]
    assert set(report) == {
        "kernel_width",
        "first_frame_validation_error",
        "cosine_projection_error",
        "mode_projection_error",
        "linear_step_residual",
        "spectral_radius",
    }
    assert report["cosine_projection_error"] < 1e-10  # 8 x 8 terms on an 8 x 8 grid: the DCT
    assert model.config.dynamics.n_centres == 10 and model.dynamics.centres.shape == (10, 2)
    np.testing.assert_allclose(model.dynamics.width.tolist(), report["kernel_width"], rtol=1e-6)
    assert model.dynamics.width.shape == (2,)  # one width per parameter (the default)
    fc = model.predict(
        {"src_lat": tsunami_runs.src_lat.values, "src_lon": tsunami_runs.src_lon.values}
    )
    assert fc.eta.dims == ("run", "time", "lat", "lon") and fc.eta.shape == (10, 6, 8, 8)
    for name in ("u", "v", "eta"):
        truth = tsunami_runs[name].values
        err = np.linalg.norm(fc[name].values - truth) / np.linalg.norm(truth)
        assert err < 1e-3, (name, err)
    one = model.predict({"src_lat": 41.0, "src_lon": 162.0})
    assert one.eta.dims == ("time", "lat", "lon") and np.isfinite(one.eta.values).all()


def test_ldnet_fit_closed_form_without_refit(tsunami_runs):
    """refit=False: n_centres is the number of training runs (10 minus 1 validation run)."""
    model = xlevda.LDNet.fit(tsunami_runs, ["src_lat", "src_lon"], linear_ldnet_config(False, 8))
    assert model.config.dynamics.n_centres == 9 and model.dynamics.centres.shape == (9, 2)
    assert "linear_fit" in model.metadata


def test_ldnet_fit_closed_form_rejects_initial(tsunami_runs, tsunami_model):
    """initial= has no meaning for the closed-form fit and raises ConfigError."""
    with pytest.raises(ConfigError, match="initial is not used by the closed-form fit"):
        xlevda.LDNet.fit(
            tsunami_runs, ["src_lat", "src_lon"], linear_ldnet_config(), initial=tsunami_model
        )


def test_ldnet_fit_closed_form_saves_and_loads(tsunami_runs, tsunami_model, tmp_path):
    """The fitted linear LDNet round-trips through save/load_surrogate with its report."""
    path = tmp_path / "linear.pt"
    tsunami_model.save(path)
    loaded = xlevda.load_surrogate(path)
    assert loaded.metadata["linear_fit"] == tsunami_model.metadata["linear_fit"]
    params = {"src_lat": 41.0, "src_lon": 162.0}
    np.testing.assert_array_equal(
        loaded.predict(params).eta.values, tsunami_model.predict(params).eta.values
    )
