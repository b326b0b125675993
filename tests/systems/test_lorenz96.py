"""Lorenz-96: integration accuracy, known behaviour, batching, labels, and the surrogate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda._convert import to_points
from xlevda.core.dynamics import euler_rollout
from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.protocol import Surrogate
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.systems.lorenz96 import (
    Lorenz96Config,
    Lorenz96Surrogate,
    rk4_step,
    simulate,
    tendency,
)

F64 = torch.float64


def on_attractor(n: int = 40, runs: int = 1, seed: int = 0) -> np.ndarray:
    """States ``(runs, n)`` at F = 8 after a spin-up of 20 time units."""
    ds = simulate([8.0] * runs, 0, Lorenz96Config(n=n), seed=seed, spinup=400)
    return ds.x.values[:, 0]


def integrate(x0: np.ndarray, dt: float, t_end: float) -> torch.Tensor:
    x = torch.as_tensor(x0, dtype=F64)
    for _ in range(round(t_end / dt)):
        x = rk4_step(x, 8.0, dt)
    return x


def test_rk4_is_fourth_order():
    x0 = on_attractor(runs=3)
    reference = integrate(x0, 0.05 / 64, 0.4)
    errors = [float((integrate(x0, 0.05 / h, 0.4) - reference).abs().max()) for h in (1, 2, 4)]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[0] < 0.05
    np.testing.assert_allclose(orders, 4.0, atol=0.15)


def test_forcing_8_climatology():
    ds = simulate(np.full(8, 8.0), 1500, seed=3, spinup=400)
    x = ds.x.values
    assert x.mean() == pytest.approx(2.35, abs=0.1)
    assert x.std() == pytest.approx(3.63, abs=0.12)


def test_small_forcing_decays_to_uniform_state():
    ds = simulate([0.3, 0.5], 1000, Lorenz96Config(n=12), seed=1)
    final = ds.x.isel(time=-1).values
    np.testing.assert_allclose(final, np.array([[0.3], [0.5]]).repeat(12, 1), atol=1e-6)
    assert np.abs(ds.x.isel(time=0).values - 0.3).max() > 0.5  # it did start away from F


@settings(max_examples=25, deadline=None)
@given(st.integers(4, 30), st.integers(0, 2**31 - 1))
def test_advection_conserves_energy(n, seed):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    advection = tendency(x, 0.0) + x
    assert float(x @ advection) == pytest.approx(0.0, abs=1e-12 * float(x @ x) ** 1.5)


def test_batched_runs_equal_one_run_at_a_time():
    cfg = Lorenz96Config(n=10)
    x0 = np.random.default_rng(0).normal(5.0, 2.0, (3, 10))
    forcing = [6.0, 8.0, 11.0]
    batched = simulate(forcing, 60, cfg, x0=x0).x.values
    for r in range(3):
        single = simulate(forcing[r], 60, cfg, x0=x0[r]).x.values[0]
        np.testing.assert_allclose(batched[r], single, rtol=0, atol=1e-12)


def test_default_initial_states_follow_the_seed():
    a, b, c = (simulate(8.0, 2, seed=s).x.values for s in (4, 4, 5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    gen = torch.Generator().manual_seed(4)
    np.testing.assert_array_equal(simulate(8.0, 2, seed=gen).x.values, a)


def test_dataset_is_cf_labelled():
    cfg = Lorenz96Config(n=6, dt=0.01)
    ds = simulate([7.0, 9.0], 3, cfg, spinup=2)
    assert ds.x.dims == ("run", "time", "site")
    assert ds.x.attrs["units"] == "1" and ds.x.attrs["long_name"]
    assert ds.cf.axes["X"] == ["site"] and ds.cf.axes["T"] == ["time"]
    np.testing.assert_allclose(ds.time.values, [0.0, 0.01, 0.02, 0.03])
    assert ds.time.attrs["units"] == "1" and ds.time.attrs["standard_name"] == "time"
    assert ds.site.values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert ds.forcing.dims == ("run",) and ds.forcing.values.tolist() == [7.0, 9.0]
    assert ds.forcing.attrs["units"] == "1"
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert json.loads(ds.attrs["config"]) == {"n": 6, "dt": 0.01}
    assert ds.attrs["spinup_steps"] == 2
    assert simulate(8.0, 1, dtype=torch.float32).x.dtype == np.float32


def test_surrogate_satisfies_the_protocol_and_its_schema_round_trips():
    model = Lorenz96Surrogate(Lorenz96Config(n=8), forcing_range=(4.0, 12.0), n_frames=5)
    assert isinstance(model, Surrogate)
    assert (model.latent_dim, model.param_dim) == (8, 1)
    assert model.dt.dtype == torch.float32 and float(model.dt) == pytest.approx(0.05)
    schema = model.schema
    assert SurrogateSchema.from_dict(schema.to_dict()) == schema
    assert schema.frame_times == pytest.approx((0.0, 0.05, 0.1, 0.15, 0.2))
    assert schema.param_range == ((4.0, 12.0),)
    u = torch.as_tensor(schema.param_norm.normalize(np.array([4.0, 8.0, 12.0])))
    assert u.tolist() == [-1.0, 0.0, 1.0]
    assert model.forcing(u).tolist() == [4.0, 8.0, 12.0]


@pytest.mark.parametrize("model_dtype", [F64, torch.float32])
def test_surrogate_rollout_equals_simulate(model_dtype):
    """Float64 states reproduce the simulator to round-off whatever the dtype of ``model.dt``."""
    cfg = Lorenz96Config(n=12)
    model = Lorenz96Surrogate(cfg, dtype=model_dtype)
    x0 = on_attractor(n=12, runs=2)
    forcing = np.array([7.5, 9.0])
    truth = simulate(forcing, 20, cfg, x0=x0).x.values
    u = torch.as_tensor(model.schema.param_norm.normalize(forcing[:, None]))
    s, _ = euler_rollout(model.vector_field, torch.as_tensor(x0), u, model.dt, 20)
    np.testing.assert_allclose(s.numpy(), truth, rtol=0, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_decoding_at_sites_is_exact(dtype):
    cfg = Lorenz96Config(n=40)
    model = Lorenz96Surrogate(cfg, dtype=dtype)
    s = torch.randn(3, 40, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4
    points = model.site_points(dtype=dtype)
    assert points.shape == (40, 1) and float(points.min()) == -1.0 and float(points.max()) < 1.0
    out = model.decode(s, points)
    assert out.shape == (3, 40, 1)
    assert torch.equal(out[..., 0], s)


def test_sites_found_by_the_xarray_layer_decode_to_the_data():
    cfg = Lorenz96Config(n=10)
    model = Lorenz96Surrogate(cfg, dtype=F64)
    ds = simulate([8.0], 2, cfg).isel(run=0)
    points, layout = to_points(ds, model.schema)
    assert layout.coords == ("site",)
    out = model.decode(torch.as_tensor(ds.x.values), torch.as_tensor(points))
    np.testing.assert_array_equal(out[..., 0].numpy(), ds.x.values)


def test_decoding_interpolates_linearly_on_the_ring():
    n = 8
    model = Lorenz96Surrogate(Lorenz96Config(n=n), dtype=F64)
    s = torch.arange(n, dtype=F64) ** 2
    positions = torch.tensor([0.5, 2.25, 7.5, 7.75, 8.0, -0.5], dtype=F64)  # 8 = site 0
    points = (positions / (n / 2) - 1)[:, None]
    expected = [0.5, 4 + 0.25 * 5, 0.5 * 49, 0.25 * 49, 0.0, 0.5 * 49]
    np.testing.assert_allclose(model.decode(s, points)[:, 0].numpy(), expected, atol=1e-12)


def test_decoder_is_pointwise():
    """Decoding each point with its own copy of the state equals decoding all points at once
    (the layout the Gauss-Newton pointwise Jacobian uses)."""
    model = Lorenz96Surrogate(Lorenz96Config(n=6), dtype=F64)
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(4, 3, 6, generator=gen, dtype=F64)  # (M, T, N)
    prepared = model.prepare_points(torch.rand(3, 5, 1, generator=gen, dtype=F64) * 2 - 1)
    together = model.decode_prepared(s, prepared)  # (M, T, P, 1)
    s_pt = s.unsqueeze(-2).expand(-1, -1, 5, -1)
    apart = model.decode_prepared(s_pt, prepared.unsqueeze(-2)).squeeze(-2)
    assert together.shape == apart.shape == (4, 3, 5, 1)
    torch.testing.assert_close(apart, together, rtol=0, atol=1e-14)


def test_vector_field_gradcheck():
    model = Lorenz96Surrogate(Lorenz96Config(n=6), dtype=F64)
    gen = torch.Generator().manual_seed(2)
    s = (3 * torch.randn(2, 6, generator=gen, dtype=F64)).requires_grad_(True)
    u = torch.rand(2, 1, generator=gen, dtype=F64).requires_grad_(True)
    assert torch.autograd.gradcheck(model.vector_field, (s, u))
    points = torch.tensor([[-0.9], [0.1]], dtype=F64)
    assert torch.autograd.gradcheck(lambda x: model.decode(x, points), (s,))


def test_bad_input_raises():
    with pytest.raises(ConfigError, match=r"Lorenz96Config.n must be an integer >= 4, got 3"):
        Lorenz96Config(n=3)
    with pytest.raises(ConfigError, match=r"Lorenz96Config.dt must be finite and > 0, got 0.0"):
        Lorenz96Config(dt=0.0)
    with pytest.raises(ConfigError, match=r"n_steps must be an integer >= 0, got -1"):
        simulate(8.0, -1)
    with pytest.raises(ConfigError, match=r"spinup must be an integer >= 0, got 1.5"):
        simulate(8.0, 1, spinup=1.5)
    with pytest.raises(VariableError, match=r"forcing must be a finite number .* got \[8.0, nan\]"):
        simulate([8.0, float("nan")], 1)
    with pytest.raises(ShapeError, match=r"x0 must have shape \(N,\) = \(40,\) .* got \(39,\)"):
        simulate(8.0, 1, x0=np.zeros(39))
    with pytest.raises(VariableError, match="x0 holds NaN"):
        simulate(8.0, 1, x0=np.full(40, np.inf))
    with pytest.raises(ConfigError, match=r"seed must be an int >= 0 or a torch.Generator, got -2"):
        simulate(8.0, 1, seed=-2)
    with pytest.raises(ConfigError, match=r"dtype must be a floating torch.dtype .* torch.int64"):
        simulate(8.0, 1, dtype=torch.int64)
    with pytest.raises(ConfigError, match=r"forcing_range must be \(lo, hi\) .* got \(10.0, 6.0\)"):
        Lorenz96Surrogate(forcing_range=(10.0, 6.0))
    with pytest.raises(ConfigError, match=r"n_frames must be an integer >= 2, got 1"):
        Lorenz96Surrogate(n_frames=1)
    model = Lorenz96Surrogate(Lorenz96Config(n=8))
    with pytest.raises(
        ShapeError, match=r"expects s \(\.\.\., 8\) and u \(\.\.\., 1\), got \(7,\)"
    ):
        model.vector_field(torch.zeros(7), torch.zeros(1))
    with pytest.raises(ShapeError, match=r"points must have shape \(\.\.\., P, 1\), got \(3, 2\)"):
        model.prepare_points(torch.zeros(3, 2))
