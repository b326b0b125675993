"""Bounded parameters (xlevda.core.bounds): the transform and the window solved through it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.models import nonlinear_problem
from xlevda.core.bounds import BoundedSurrogate, ParameterBounds
from xlevda.core.levda import solve_window
from xlevda.core.members import RandomizedMaximumLikelihood as RML
from xlevda.errors import ConfigError

F64 = torch.float64


@settings(max_examples=50, deadline=None)
@given(
    low=st.floats(-1e3, 1e3),
    width=st.floats(1e-3, 1e3),
    frac=st.lists(st.floats(1e-3, 1 - 1e-3), min_size=1, max_size=5),
)
def test_round_trip_inside_the_box(low, width, frac):
    """``bounded(unbounded(z)) == z`` inside the box, to the transform's conditioning."""
    bounds = ParameterBounds(torch.tensor([low], dtype=F64), torch.tensor([low + width], dtype=F64))
    u = low + width * torch.tensor(frac, dtype=F64)[:, None]
    z = torch.cat([torch.randn(len(frac), 2, dtype=F64), u], -1)
    back = bounds.bounded(bounds.unbounded(z))
    # d u / d w = width f (1 - f) >= width * 1e-3: round-off of w (~1e-16 |w|) stays tiny
    torch.testing.assert_close(back, z, atol=1e-12 * (abs(low) + width), rtol=1e-12)


def test_any_unbounded_value_maps_strictly_inside_and_outside_values_are_moved_in():
    bounds = ParameterBounds(
        torch.tensor([-1.0, 0.0], dtype=F64), torch.tensor([1.0, 5.0], dtype=F64)
    )
    w = torch.tensor([[0.0, -30.0, 30.0], [0.0, 30.0, -30.0]], dtype=F64)
    u = bounds.bounded(w)[:, 1:]
    assert ((u >= bounds.low) & (u <= bounds.high)).all()
    z = torch.tensor([[7.0, -3.0, 9.0], [7.0, 0.5, 2.5]], dtype=F64)
    assert bounds.outside(z).tolist() == [True, False]
    inside = bounds.bounded(bounds.unbounded(z))
    assert not bounds.outside(inside).any()
    torch.testing.assert_close(inside[0, 1:], torch.tensor([-1 + 2e-4, 5 - 5e-4], dtype=F64))
    assert inside[0, 0] == 7.0  # latent states untouched


@pytest.mark.parametrize(
    ("low", "high", "margin"),
    [([0.0], [0.0], 1e-4), ([0.0, 1.0], [1.0], 1e-4), ([float("nan")], [1.0], 1e-4),
     ([0.0], [1.0], 0.5)],
)  # fmt: skip
def test_bad_bounds_are_refused(low, high, margin):
    with pytest.raises(ConfigError, match="ParameterBounds"):
        ParameterBounds(torch.tensor(low), torch.tensor(high), margin)


def test_a_window_through_the_bounds_is_the_window_of_the_transformed_problem():
    """Solving through BoundedSurrogate equals solving the problem written in w by hand: the
    vector field of u(w), members and optimizer unchanged."""
    sur, window, z_b = nonlinear_problem(K=6)
    d_u = sur.param_dim
    lo = z_b[:, -d_u:].min(0).values - 0.5
    hi = z_b[:, -d_u:].max(0).values + 0.5
    bounds = ParameterBounds(lo, hi)

    class ByHand:
        latent_dim, param_dim, schema, dt = sur.latent_dim, d_u, sur.schema, sur.dt

        def vector_field(self, s, w):
            return sur.vector_field(s, lo + (hi - lo) * torch.sigmoid(w))

        def prepare_points(self, points):
            return sur.prepare_points(points)

        def decode_prepared(self, s, prepared):
            return sur.decode_prepared(s, prepared)

    kw = {"member_mode": RML(), "noise_seed": 3}
    w_b = bounds.unbounded(z_b)
    res = solve_window(BoundedSurrogate(sur, bounds), w_b, window, **kw)
    ref = solve_window(ByHand(), w_b, window, **kw)
    torch.testing.assert_close(res.z_analysis, ref.z_analysis, atol=0, rtol=0)
    z_a = bounds.bounded(res.z_analysis)
    assert not bounds.outside(z_a).any()


def test_the_surrogate_must_have_as_many_parameters_as_the_bounds():
    sur, _, _ = nonlinear_problem(K=4)
    bounds = ParameterBounds(torch.zeros(sur.param_dim + 1), torch.ones(sur.param_dim + 1))
    with pytest.raises(ConfigError, match="parameters"):
        BoundedSurrogate(sur, bounds)
