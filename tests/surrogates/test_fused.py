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
from xlevda.core.levda import ObsWindow, Randomized, WindowObjective
from xlevda.surrogates.fused import residual_head, residual_misfit, weighted_misfit
from xlevda.surrogates.networks import MLPDecoder, activation_fn

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
    with pytest.raises(ValueError, match="state only; a weight"):
        residual_head(hidden, trainable, out_b, state, prepared)
    with torch.no_grad():  # nothing to differentiate: allowed
        residual_head(hidden, trainable, out_b, state, prepared)
    with pytest.raises(ValueError, match=r"one dtype and device: state is torch\.float32"):
        residual_head(hidden, out_w, out_b, state.float(), prepared)
    data = torch.zeros(3, 3, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="data require grad"):
        residual_misfit(hidden, out_w, out_b, state, prepared, data, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"activation must be one of .* got 'relu'"):
        residual_head(hidden, out_w, out_b, state, prepared, "relu")


def _decoder(dtype=F64) -> MLPDecoder:
    dec = MLPDecoder(
        4, 2, 3, width=8, depth=3, n_fourier=3, fourier_scale=1.0, activation="tanh", seed=0
    ).to(dtype)
    return dec


def test_decoder_uses_the_fused_path_only_where_it_is_exact():
    dec = _decoder()
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
    dec = _decoder().requires_grad_(False)
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


def test_window_cost_is_the_same_through_the_fused_misfit():
    model = make_model(MLPDecoderConfig(width=8, depth=2, n_fourier=4)).eval()
    model.requires_grad_(False)
    g = torch.Generator().manual_seed(4)
    points = 2 * torch.rand(3, 7, 2, generator=g, dtype=F64) - 1
    values = torch.randn(3, 7, 2, generator=g, dtype=F64)
    step, frac = torch.tensor([0, 1, 3]), torch.tensor([0.0, 0.4, 0.0])
    window = ObsWindow(step, frac, points, values, torch.ones_like(values))
    z_b = 0.3 * torch.randn(6, 5, generator=g, dtype=F64)
    objective = WindowObjective.build(model, z_b, window, mode=Randomized(seed=1))
    members = torch.arange(6)

    def cost_and_grad():
        beta = objective.start.clone().requires_grad_(True)
        cost = objective.cost(beta, members)
        return cost, torch.autograd.grad(cost.sum(), beta)[0]

    cost, grad = cost_and_grad()
    model.decoder.fused = False
    cost_ref, grad_ref = cost_and_grad()
    torch.testing.assert_close(cost, cost_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
