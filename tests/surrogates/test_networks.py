"""Building blocks: Fourier features, residual MLPs, vector field, both decoders."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.decoders import MLPDecoder, SeparableDecoder
from xlevda.surrogates.layers import FourierFeatures, ResidualMLP, activation_fn
from xlevda.surrogates.vector_fields import VectorFieldNet

D_S, N_C, C = 3, 2, 2


def _mlp_decoder(activation: str = "tanh") -> MLPDecoder:
    return MLPDecoder(
        D_S, N_C, C, width=6, depth=3, n_fourier=3, fourier_scale=1.0, activation=activation, seed=0
    )


def _separable_decoder(
    activation: str = "tanh", coef_width: int = 5, n_basis: int = 4
) -> SeparableDecoder:
    return SeparableDecoder(
        D_S,
        N_C,
        C,
        n_basis=n_basis,
        basis_width=6,
        basis_depth=2,
        coef_width=coef_width,
        coef_depth=2,
        n_fourier=3,
        fourier_scale=1.0,
        activation=activation,
        seed=0,
    )


DECODERS = {
    "mlp": _mlp_decoder,
    "separable": _separable_decoder,
    "separable folded": lambda: _separable_decoder(coef_width=3),
}


def test_fourier_features_are_a_fixed_seeded_buffer():
    ff = FourierFeatures(2, 5, scale=2.0, seed=3)
    assert "B" in dict(ff.named_buffers()) and not list(ff.parameters())
    assert torch.equal(ff.B, FourierFeatures(2, 5, scale=2.0, seed=3).B)
    assert not torch.equal(ff.B, FourierFeatures(2, 5, scale=2.0, seed=4).B)
    x = torch.rand(4, 7, 2) * 2 - 1
    out = ff(x)
    assert out.shape == (4, 7, 12) and ff.n_out == 12
    proj = 2 * math.pi * x @ ff.B
    torch.testing.assert_close(out[..., :5], torch.sin(proj))
    torch.testing.assert_close(out[..., 5:10], torch.cos(proj))
    torch.testing.assert_close(out[..., 10:], x)
    assert FourierFeatures(2, 5, 1.0, 0, include_input=False)(x).shape == (4, 7, 10)


def test_fourier_features_reject_wrong_coordinate_count():
    with pytest.raises(ShapeError, match=r"points must have last dimension 2, got shape \(4, 3\)"):
        FourierFeatures(2, 5, 1.0, 0)(torch.zeros(4, 3))


def test_residual_mlp_with_split_inputs_equals_concatenated_input():
    torch.manual_seed(0)
    split = ResidualMLP((3, 2), 4, width=8, depth=3, activation="silu")
    joined = ResidualMLP(5, 4, width=8, depth=3, activation="silu")
    with torch.no_grad():
        joined.inputs[0].weight.copy_(
            torch.cat([split.inputs[0].weight, split.inputs[1].weight], dim=1)
        )
        joined.inputs[0].bias.copy_(split.inputs[0].bias)
        for a, b in zip(joined.hidden, split.hidden, strict=True):
            a.load_state_dict(b.state_dict())
        joined.output.load_state_dict(split.output.state_dict())
    a, b = torch.randn(6, 3), torch.randn(6, 2)
    torch.testing.assert_close(split(a, b), joined(torch.cat([a, b], -1)))
    # broadcasting: one b for all rows
    torch.testing.assert_close(split(a, b[0]), joined(torch.cat([a, b[0].expand(6, 2)], -1)))


def test_residual_mlp_errors():
    with pytest.raises(ConfigError, match="depth must be >= 1, got 0"):
        ResidualMLP(2, 2, width=4, depth=0, activation="tanh")
    with pytest.raises(ConfigError, match=r"activation must be one of .*got 'relu'"):
        activation_fn("relu")
    with pytest.raises(ShapeError, match="takes 2 inputs, got 1"):
        ResidualMLP((2, 1), 2, width=4, depth=1, activation="tanh")(torch.zeros(2))


@pytest.mark.parametrize("activation", ["tanh", "silu", "gelu"])
def test_gradcheck_vector_field(activation):
    torch.manual_seed(0)
    field = VectorFieldNet(D_S, 2, width=5, depth=2, activation=activation).double()
    s = torch.randn(2, D_S, dtype=torch.float64, requires_grad=True)
    u = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(field, (s, u))


def test_vector_field_linear_term_starts_at_zero_and_can_carry_parameters():
    torch.manual_seed(0)
    plain = VectorFieldNet(D_S, 2, width=5, depth=2, activation="tanh").double()
    torch.manual_seed(0)
    linear = VectorFieldNet(D_S, 2, width=5, depth=2, activation="tanh", linear=True).double()
    s, u = torch.randn(3, D_S, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(linear(s, u), plain(s, u), rtol=0, atol=0)
    assert torch.autograd.gradcheck(linear, (s.requires_grad_(), u.requires_grad_()))
    # F = (u - s[:2]) / dt on the first two components: one Euler step from s = 0 gives
    # s[:2] = u, which then stays put.
    dt = 0.25
    with torch.no_grad():
        for p in linear.net.parameters():
            p.zero_()
        linear.linear_s[:2, :2] = -torch.eye(2) / dt
        linear.linear_u[:2] = torch.eye(2) / dt
    z = torch.zeros(3, D_S, dtype=torch.float64)
    for _ in range(4):
        z = z + dt * linear(z, u.detach())
        torch.testing.assert_close(z[:, :2], u.detach())


@pytest.mark.parametrize("kind", DECODERS)
def test_gradcheck_decoders(kind):
    torch.manual_seed(0)
    dec = DECODERS[kind]().double()
    s = torch.randn(2, D_S, dtype=torch.float64, requires_grad=True)
    pts = (torch.rand(2, 3, N_C, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    assert torch.autograd.gradcheck(dec, (s, pts))
    prepared = dec.prepare_points(pts).detach()
    assert torch.autograd.gradcheck(lambda s: dec.decode_prepared(s, prepared), (s,))


@pytest.mark.parametrize(
    "coef_width, n_basis, folds", [(3, 8, True), (5, 4, False)], ids=["folded", "unfolded"]
)
def test_separable_decoder_is_a_sum_over_a_shared_basis(coef_width, n_basis, folds):
    dec = _separable_decoder(coef_width=coef_width, n_basis=n_basis).double()
    assert dec.folds(7) == folds
    s = torch.randn(5, D_S, dtype=torch.float64)
    pts = torch.rand(7, N_C, dtype=torch.float64) * 2 - 1
    basis = dec.basis_points(pts)
    assert basis.shape == (7, n_basis + 1)
    torch.testing.assert_close(basis[:, -1], torch.ones(7, dtype=torch.float64))
    coef = dec.coef(s).reshape(5, n_basis + 1, C)  # (state, n_basis + 1, C)
    expected = (basis[None, :, :, None] * coef[:, None, :, :]).sum(-2)
    torch.testing.assert_close(dec(s, pts), expected)
    # the prepared path (folded: the basis through the coefficient network's output
    # layer; unfolded: the basis itself) is the same function
    prepared = dec.prepare_points(pts)
    assert prepared.shape == (7, C * (coef_width + 1) if folds else n_basis + 1)
    torch.testing.assert_close(dec.decode_prepared(s, prepared), expected)
    # and so is the other form, given explicitly
    other = basis if folds else None
    if other is not None:
        torch.testing.assert_close(dec.decode_prepared(s, other), expected)
    # one channel at a time, from either form
    for c in range(C):
        torch.testing.assert_close(dec.decode_channel(s, prepared, c), expected[..., c])
        torch.testing.assert_close(dec.decode_channel(s, basis, c), expected[..., c])


def test_separable_decoder_folds_only_where_it_pays():
    dec = _separable_decoder(coef_width=8, n_basis=8)  # fold where 2 P 9 <= 9 (8 + P)
    assert [dec.folds(p) for p in (1, 8, 9, 50)] == [True, True, False, False]
    assert _separable_decoder(coef_width=3, n_basis=8).folds(10**6)  # H + 1 < (n_basis + 1) / 2
    assert not _separable_decoder(coef_width=2, n_basis=5).folds(1)  # 6 == C (H + 1): one form


def _shapes():
    """Leading shapes of s and points that broadcast, with the expected output shape."""
    dims = st.lists(st.integers(1, 3), min_size=0, max_size=3)
    return dims.flatmap(
        lambda full: st.tuples(
            st.just(tuple(full)),
            st.lists(st.booleans(), min_size=len(full), max_size=len(full)),
            st.lists(st.booleans(), min_size=len(full), max_size=len(full)),
            st.integers(0, len(full)),
        )
    )


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(sorted(DECODERS)), shapes=_shapes(), n_points=st.integers(1, 4))
def test_decode_equals_decode_prepared_and_broadcasts(kind, shapes, n_points):
    full, keep_s, keep_p, drop = shapes
    s_lead = tuple(d if k else 1 for d, k in zip(full, keep_s, strict=True))
    p_lead = tuple(d if k else 1 for d, k in zip(full, keep_p, strict=True))[drop:]
    dec = DECODERS[kind]().double()
    gen = torch.Generator().manual_seed(len(full))
    s = torch.randn(*s_lead, D_S, generator=gen, dtype=torch.float64)
    pts = torch.rand(*p_lead, n_points, N_C, generator=gen, dtype=torch.float64) * 2 - 1
    out = dec(s, pts)
    expected = torch.broadcast_shapes(s_lead, p_lead)
    assert out.shape == (*expected, n_points, C)
    prepared = dec.prepare_points(pts)
    torch.testing.assert_close(out, dec.decode_prepared(s, prepared))
    forms = [prepared, dec.basis_points(pts)] if kind.startswith("separable") else [prepared]
    for form, c in itertools.product(forms, range(C)):
        torch.testing.assert_close(dec.decode_channel(s, form, c), out[..., c])
    # each state decodes independently: compare one broadcast element with an unbatched call
    if out.numel():
        idx_s = (0,) * len(s_lead)
        idx_p = (0,) * len(p_lead)
        torch.testing.assert_close(out[(0,) * len(expected)], dec(s[idx_s], pts[idx_p]))


def test_decoders_reject_wrong_latent_size():
    with pytest.raises(ShapeError, match=r"s must have last dimension 3, got shape \(2, 4\)"):
        _mlp_decoder()(torch.zeros(2, 4), torch.zeros(5, N_C))
    with pytest.raises(ShapeError, match="prepared points must have last dimension 6"):
        _mlp_decoder().decode_prepared(torch.zeros(2, D_S), torch.zeros(5, N_C))
    dec = _separable_decoder()
    with pytest.raises(ShapeError, match=r"s must have last dimension 3, got shape \(4,\)"):
        dec(torch.zeros(4), torch.zeros(5, N_C))
    with pytest.raises(ShapeError, match="basis must have last dimension 5"):
        dec.decode_basis(torch.zeros(2, D_S), torch.zeros(5, 3))
    with pytest.raises(
        ShapeError, match=rf"last dimension 5 \(the basis\) or {C * 6} \(the folded basis\)"
    ):
        dec.decode_prepared(torch.zeros(2, D_S), torch.zeros(5, 3))
