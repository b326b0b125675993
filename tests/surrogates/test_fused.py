"""The fused residual MLP (decoded values and misfit) against autograd through
the layers, and the MLP decoder's choice between the two."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xlevda.surrogates.fused as fused
from tests.surrogates.test_ldnet_model import make_model
from xlevda import MLPDecoderConfig
from xlevda.core.members import RandomizedMaximumLikelihood
from xlevda.core.misfit import weighted_misfit
from xlevda.core.objective import WindowObjective
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.decoders import MLPDecoder
from xlevda.surrogates.fused import residual_head, residual_misfit
from xlevda.surrogates.layers import activation_fn

F64 = torch.float64


def _layers(width: int, depth: int, n_out: int, seed: int = 0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    hidden = [
        (
            torch.randn(width, width, generator=g, dtype=dtype) / math.sqrt(width),
            0.3 * torch.randn(width, generator=g, dtype=dtype),
        )
        for _ in range(depth)
    ]
    out_w = torch.randn(n_out, width, generator=g, dtype=dtype) / math.sqrt(width)
    return hidden, out_w, torch.randn(n_out, generator=g, dtype=dtype)


def _reference(hidden, out_w, out_b, state, prepared, activation="tanh"):
    act = activation_fn(activation)
    h = act(prepared + state.unsqueeze(-2))
    for w, b in hidden:
        h = h + act(h @ w.T + b)
    return h @ out_w.T + out_b


def _decoder(activation="tanh", width=8, depth=3, dtype=F64) -> MLPDecoder:
    dec = MLPDecoder(
        4,
        2,
        3,
        width=width,
        depth=depth,
        n_fourier=3,
        fourier_scale=1.0,
        activation=activation,
        seed=0,
    ).to(dtype)
    return dec.requires_grad_(False)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 3 rows at width 8: every path through the tiling runs."""
    monkeypatch.setattr(fused, "_TILE_VALUES", 24)


ACTS = ["tanh", "silu", "gelu"]


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize(
    ("state_shape", "prep_shape"),
    [((4, 8), (5, 8)), ((2, 3, 8), (3, 5, 8)), ((3, 1, 8), (2, 4, 8)), ((8,), (2, 7, 8))],
)
def test_head_equals_autograd_in_float64(state_shape, prep_shape, depth, activation, small_tiles):
    hidden, out_w, out_b = _layers(8, depth, 3)
    g = torch.Generator().manual_seed(1)
    state = torch.randn(state_shape, generator=g, dtype=F64, requires_grad=True)
    prepared = torch.randn(prep_shape, generator=g, dtype=F64)
    ref = _reference(hidden, out_w, out_b, state, prepared, activation)
    out = residual_head(hidden, out_w, out_b, state, prepared, activation)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    probe = torch.randn(ref.shape, generator=g, dtype=F64)
    (g_ref,) = torch.autograd.grad((ref * probe).sum(), state)
    (g_out,) = torch.autograd.grad((out * probe).sum(), state)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("n_data", [1, 4])
@pytest.mark.parametrize("n_points", [2, 7])
def test_misfit_equals_autograd_in_float64(n_data, n_points, activation, small_tiles):
    hidden, out_w, out_b = _layers(8, 2, 3)
    g = torch.Generator().manual_seed(2)
    state = torch.randn(4, 3, 8, generator=g, dtype=F64, requires_grad=True)
    prepared = torch.randn(3, n_points, 8, generator=g, dtype=F64)
    data = torch.randn(n_data, 3, n_points, 3, generator=g, dtype=F64)
    sqrt_w = torch.rand(3, n_points, 3, generator=g, dtype=F64)
    sqrt_w[0, 0] = 0.0  # a missing value
    decoded = _reference(hidden, out_w, out_b, state, prepared, activation)
    ref = weighted_misfit(decoded, data, sqrt_w)
    out = residual_misfit(hidden, out_w, out_b, state, prepared, data, sqrt_w, activation)
    assert out.shape == ref.shape == (4, 3)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    probe = torch.rand(4, 3, generator=g, dtype=F64)
    (g_ref,) = torch.autograd.grad((ref * probe).sum(), state)
    (g_out,) = torch.autograd.grad((out * probe).sum(), state)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-11, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n_lead=st.integers(0, 5),
    n_points=st.integers(0, 9),
    width=st.integers(1, 9),
    depth=st.integers(0, 3),
    tile=st.integers(1, 40),
    activation=st.sampled_from(ACTS),
    seed=st.integers(0, 2**16),
)
def test_head_and_misfit_match_autograd_for_any_shape(
    n_lead, n_points, width, depth, tile, activation, seed
):
    old = fused._TILE_VALUES
    fused._TILE_VALUES = tile
    try:
        hidden, out_w, out_b = _layers(width, depth, 2, seed)
        g = torch.Generator().manual_seed(seed)
        state = torch.randn(n_lead, width, generator=g, dtype=F64, requires_grad=True)
        prepared = torch.randn(n_points, width, generator=g, dtype=F64)
        data = torch.randn(n_points, 2, generator=g, dtype=F64)
        sqrt_w = torch.rand(n_points, 2, generator=g, dtype=F64)
        ref = _reference(hidden, out_w, out_b, state, prepared, activation)
        out = residual_head(hidden, out_w, out_b, state, prepared, activation)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        args = (hidden, out_w, out_b, state, prepared, data, sqrt_w, activation)
        misfit = residual_misfit(*args)
        ref_misfit = weighted_misfit(ref, data, sqrt_w)
        torch.testing.assert_close(misfit, ref_misfit, rtol=1e-12, atol=1e-12)
        (g_ref,) = torch.autograd.grad(ref_misfit.sum() + ref.sum(), state, allow_unused=True)
        (g_out,) = torch.autograd.grad(misfit.sum() + out.sum(), state, allow_unused=True)
        torch.testing.assert_close(g_out, g_ref, rtol=1e-11, atol=1e-11)
    finally:
        fused._TILE_VALUES = old


@pytest.mark.parametrize("activation", ACTS)
def test_float32_is_within_round_off_of_autograd(activation):
    hidden, out_w, out_b = _layers(64, 2, 3, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    state = torch.randn(50, 64, generator=g, requires_grad=True)
    prepared = torch.randn(300, 64, generator=g)
    ref = _reference(hidden, out_w, out_b, state, prepared, activation)
    out = residual_head(hidden, out_w, out_b, state, prepared, activation)
    assert (out - ref).abs().max() < 2e-5 * ref.abs().max()
    (g_ref,) = torch.autograd.grad(ref.square().sum(), state)
    (g_out,) = torch.autograd.grad(out.square().sum(), state)
    assert (g_out - g_ref).norm() < 1e-5 * g_ref.norm()


def test_backward_twice_with_retained_graph():
    hidden, out_w, out_b = _layers(8, 2, 3)
    state = torch.randn(6, 8, dtype=F64, requires_grad=True)
    prepared = torch.randn(4, 8, dtype=F64)
    out = residual_head(hidden, out_w, out_b, state, prepared)
    ref = _reference(hidden, out_w, out_b, state, prepared)
    for c in range(3):
        (got,) = torch.autograd.grad(out[..., c].sum(), state, retain_graph=True)
        (want,) = torch.autograd.grad(ref[..., c].sum(), state, retain_graph=True)
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


def test_refuses_weights_that_require_grad_and_mixed_dtypes():
    hidden, out_w, out_b = _layers(8, 1, 3)
    state, prepared = torch.randn(2, 8, dtype=F64), torch.randn(3, 8, dtype=F64)
    trainable = out_w.clone().requires_grad_(True)
    with pytest.raises(ConfigError, match="state only; a weight"):
        residual_head(hidden, trainable, out_b, state, prepared)
    with torch.no_grad():  # nothing to differentiate: allowed
        residual_head(hidden, trainable, out_b, state, prepared)
    with pytest.raises(ShapeError, match=r"one dtype and device: state is torch\.float32"):
        residual_head(hidden, out_w, out_b, state.float(), prepared)
    data = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    with pytest.raises(ConfigError, match="data require grad"):
        residual_misfit(hidden, out_w, out_b, state, prepared, data, torch.ones(3, 3))
    with pytest.raises(ShapeError, match=r"must have 1 or 3 channels"):
        wide = torch.zeros(3, 4, dtype=F64)
        residual_misfit(hidden, out_w, out_b, state, prepared, wide, torch.ones_like(wide))
    with pytest.raises(ConfigError, match=r"activation must be one of .* got 'relu'"):
        residual_head(hidden, out_w, out_b, state, prepared, "relu")


def test_decoder_uses_the_fused_path_only_where_it_is_exact():
    dec = _decoder().requires_grad_(True)
    points = torch.rand(5, 2, dtype=F64)
    s = torch.randn(3, 4, dtype=F64, requires_grad=True)
    # trainable weights: autograd path, and the weights get gradients
    prepared = dec.prepare_points(points)
    assert not dec._fusable(dec.net.project(1, s), prepared)
    dec.decode_prepared(s, prepared).sum().backward()
    assert dec.net.hidden[0].weight.grad is not None
    # frozen: fused, same values and state gradients as with fused=False
    dec.requires_grad_(False)
    prepared = dec.prepare_points(points)
    assert dec._fusable(dec.net.project(1, s), prepared)
    out = dec.decode_prepared(s, prepared)
    (g_fused,) = torch.autograd.grad(out.square().sum(), s)
    dec.fused = False
    assert not dec._fusable(dec.net.project(1, s), prepared)
    ref = dec.decode_prepared(s, prepared)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), s)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-11, atol=1e-12)
    # another dtype: the autograd path
    assert not dec._fusable(dec.net.project(1, s), prepared.float())


def test_decoder_under_torch_func_transforms_falls_back():
    dec = _decoder()
    prepared = dec.prepare_points(torch.rand(5, 2, dtype=F64))
    s = torch.randn(3, 4, dtype=F64)
    tangent = torch.randn(3, 4, dtype=F64)
    _, jvp = torch.func.jvp(lambda x: dec.decode_prepared(x, prepared), (s,), (tangent,))
    dec.fused = False
    _, jvp_ref = torch.func.jvp(lambda x: dec.decode_prepared(x, prepared), (s,), (tangent,))
    torch.testing.assert_close(jvp, jvp_ref)
    dec.fused = True
    jac = torch.func.vmap(torch.func.jacrev(lambda x: dec.decode_prepared(x, prepared)))(s)
    assert jac.shape == (3, 5, 3, 4)


@pytest.mark.parametrize("activation", ACTS)
def test_decoder_misfit_and_decode_match_the_autograd_path(activation):
    dec = MLPDecoder(
        4, 2, 3, width=8, depth=3, n_fourier=3, fourier_scale=1.0, activation=activation, seed=0
    ).to(F64)
    dec.requires_grad_(False)
    prepared = dec.prepare_points(torch.rand(2, 6, 2, dtype=F64))
    s = torch.randn(5, 2, 4, dtype=F64, requires_grad=True)
    data, sqrt_w = torch.randn(2, 6, 3, dtype=F64), torch.rand(2, 6, 3, dtype=F64)

    def both():
        misfit = dec.misfit_prepared(s, prepared, data, sqrt_w)
        decoded = dec.decode_prepared(s, prepared)
        return misfit, decoded, torch.autograd.grad(misfit.sum() + decoded.sum(), s)[0]

    fast = both()
    dec.fused = False
    ref = both()
    for got, want in zip(fast, ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-12)


def _window_objective():
    model = make_model(MLPDecoderConfig(width=8, depth=2, n_fourier=4)).eval()
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(4)
    points = 2 * torch.rand(3, 7, 2, generator=g, dtype=F64) - 1
    values = torch.randn(3, 7, 2, generator=g, dtype=F64)
    step, frac = torch.tensor([0, 1, 3]), torch.tensor([0.0, 0.4, 0.0])
    window = ObsWindow(step, frac, points, values, torch.ones_like(values))
    z_b = 0.3 * torch.randn(6, 5, generator=g, dtype=F64)
    objective = WindowObjective.build(
        model, z_b, window, member_mode=RandomizedMaximumLikelihood(), noise_seed=1
    )
    return model, objective, torch.arange(6)


def test_window_cost_is_the_same_through_the_fused_misfit():
    model, objective, members = _window_objective()

    def cost_and_grad():
        beta = objective.start.clone().requires_grad_(True)
        cost = objective.cost(beta, members)
        return cost, torch.autograd.grad(cost.sum(), beta)[0]

    cost, grad = cost_and_grad()
    model.decoder.fused = False
    cost_ref, grad_ref = cost_and_grad()
    torch.testing.assert_close(cost, cost_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)


# --- broadcasting over channels and points -------------------------------------------


@pytest.mark.parametrize(
    ("data_shape", "weight_shape"),
    [((5, 1), (5, 3)), ((5, 3), (5, 1))],
    ids=["data_C1", "sqrt_weight_C1"],
)
def test_misfit_broadcasts_channels_like_weighted_misfit(data_shape, weight_shape):
    """data or sqrt_weight with one channel broadcast over the outputs' channels."""
    hidden, out_w, out_b = _layers(8, 2, 3)
    g = torch.Generator().manual_seed(1)
    state = torch.randn(4, 8, generator=g, dtype=F64, requires_grad=True)
    prepared = torch.randn(5, 8, generator=g, dtype=F64)
    data = torch.randn(data_shape, generator=g, dtype=F64)
    sqrt_w = torch.rand(weight_shape, generator=g, dtype=F64)
    ref = weighted_misfit(_reference(hidden, out_w, out_b, state, prepared), data, sqrt_w)
    out = residual_misfit(hidden, out_w, out_b, state, prepared, data, sqrt_w)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    (g_ref,) = torch.autograd.grad(ref.sum(), state)
    (g_out,) = torch.autograd.grad(out.sum(), state)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-11, atol=1e-12)


def test_decoder_misfit_broadcasts_a_per_point_weight():
    """Same through ``MLPDecoder.misfit_prepared`` (fused by default when frozen)."""
    dec = _decoder()
    prepared = dec.prepare_points(torch.rand(6, 2, dtype=F64))
    s = torch.randn(5, 4, dtype=F64)
    data = torch.randn(6, 3, dtype=F64)
    sqrt_w = torch.rand(6, 1, dtype=F64)  # one weight per point, all channels
    got = dec.misfit_prepared(s, prepared, data, sqrt_w)
    dec.fused = False
    want = dec.misfit_prepared(s, prepared, data, sqrt_w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_misfit_broadcasts_points_of_sqrt_weight():
    """The number of points broadcasts from the weights too (prepared and data at P=1)."""
    hidden, out_w, out_b = _layers(8, 1, 3)
    g = torch.Generator().manual_seed(2)
    state = torch.randn(4, 8, generator=g, dtype=F64)
    prepared = torch.randn(1, 8, generator=g, dtype=F64)
    data = torch.randn(1, 3, generator=g, dtype=F64)
    sqrt_w = torch.rand(5, 3, generator=g, dtype=F64)
    ref = weighted_misfit(_reference(hidden, out_w, out_b, state, prepared), data, sqrt_w)
    out = residual_misfit(hidden, out_w, out_b, state, prepared, data, sqrt_w)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


# --- higher derivatives -----------------------------------------------------------------

SECOND_ORDER = "first derivatives only"


def test_misfit_and_head_refuse_second_derivatives():
    """Their backward passes run on constants: a Hessian would come out as zero, so a
    graph of the gradient (``create_graph``) raises instead."""
    hidden, out_w, out_b = _layers(8, 2, 3)
    g = torch.Generator().manual_seed(3)
    s0 = torch.randn(3, 8, generator=g, dtype=F64)
    prepared = torch.randn(5, 8, generator=g, dtype=F64)
    data, sqrt_w = torch.randn(5, 3, generator=g, dtype=F64), torch.rand(5, 3, dtype=F64)
    probe = torch.randn(3, 5, 3, generator=g, dtype=F64)

    def misfit(s):
        return residual_misfit(hidden, out_w, out_b, s, prepared, data, sqrt_w).sum()

    def readout(s):  # linear in the decoded values: the cotangent is a constant
        return (residual_head(hidden, out_w, out_b, s, prepared) * probe).sum()

    for fn in (misfit, readout):
        with pytest.raises(RuntimeError, match=SECOND_ORDER):
            torch.autograd.functional.hessian(fn, s0)


def test_window_cost_hessian_vector_product_needs_the_autograd_path():
    model, objective, members = _window_objective()
    v = torch.randn(objective.start.shape, generator=torch.Generator().manual_seed(5), dtype=F64)

    def hvp():
        beta = objective.start.clone().requires_grad_(True)
        cost = objective.cost(beta, members).sum()
        (grad,) = torch.autograd.grad(cost, beta, create_graph=True)
        return torch.autograd.grad((grad * v).sum(), beta)[0]

    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        hvp()
    model.decoder.fused = False
    curvature = hvp() - v  # the prior term's share is v itself
    assert curvature.abs().max() > 1e-3  # the observations' curvature is there


# --- forward-mode AD and torch.func over the weights -----------------------------------


def test_decoder_works_under_forward_ad():
    """Dual tensors are not functorch-wrapped: forward-mode AD takes the autograd path."""
    import torch.autograd.forward_ad as fwAD

    dec = _decoder()
    prepared = dec.prepare_points(torch.rand(5, 2, dtype=F64))
    s = torch.randn(3, 4, dtype=F64)
    t = torch.randn(3, 4, dtype=F64)

    def tangent():
        with fwAD.dual_level():
            return fwAD.unpack_dual(dec.decode_prepared(fwAD.make_dual(s, t), prepared)).tangent

    got = tangent()
    dec.fused = False
    want = tangent()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["net.output.weight", "net.hidden.0.weight"])
def test_decoder_under_vmap_over_its_head_weights(name):
    """vmap over stacked head weights (a model ensemble via functional_call), with plain
    state and points: the weights are checked for transforms too."""
    dec = _decoder()
    points = torch.rand(5, 2, dtype=F64)
    s = torch.randn(3, 4, dtype=F64)
    weight = dict(dec.named_parameters())[name].detach()
    stacked = torch.stack([weight, 1.1 * weight])

    def decode(w):
        return torch.func.functional_call(dec, {name: w}, args=(s, points), strict=False)

    got = torch.func.vmap(decode)(stacked)
    dec.fused = False
    want = torch.func.vmap(decode)(stacked)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# --- reduced precision ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_takes_the_autograd_path(dtype):
    """The folded tanh (``h_l = 2 g_l - (l + 1)``, g a running sum of sigmoids) loses
    leading bits: about 3.5 times autograd's gradient error in half precision at depth
    10, so only float32 and float64 are fused."""
    dec = _decoder(width=16, depth=4).to(dtype)
    prepared = dec.prepare_points(torch.rand(7, 2, dtype=dtype))
    s = torch.randn(3, 4, dtype=dtype)
    assert not dec._fusable(dec.net.project(1, s), prepared)
    assert dec.to(torch.float32)._fusable(dec.net.project(1, s.float()), prepared.float())
