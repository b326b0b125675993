"""The tsunami simulator as a full-state model: rollout, decoder, gradients, schema, checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xlevda._convert import build_schema, to_points
from xlevda.core.dynamics import trajectory
from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.protocol import FullStateModel, Surrogate
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.systems.tsunami import EARTH_RADIUS, TsunamiConfig, sample_sources, simulate
from xlevda.systems.tsunami_model import TsunamiModel

F64 = torch.float64
CFG = TsunamiConfig(nx=10, ny=9, n_frames=4)  # nx != ny catches transpositions


@pytest.fixture(scope="module")
def case():
    """Three sources from the benchmark sampler, simulated, and the model of their config."""
    sources = sample_sources(3, seed=2, config=CFG)
    return TsunamiModel(CFG), sources, simulate(**sources, config=CFG)


def dataset_values(ds) -> np.ndarray:
    """``(run, time, lat * lon, channel)`` in schema order."""
    arr = ds[["u", "v", "eta"]].to_array("c").transpose("run", "time", "lat", "lon", "c").values
    return arr.reshape(arr.shape[0], arr.shape[1], -1, 3)


def test_euler_rollout_reproduces_simulate_frame_by_frame(case):
    model, sources, ds = case
    norm = model.schema.param_norm
    u = torch.as_tensor(norm.normalize(np.stack([sources["src_lat"], sources["src_lon"]], -1)))
    s0 = model.initial_state(u)
    assert s0.shape == (3, model.latent_dim)
    z = trajectory(model, torch.cat([s0, u], -1), CFG.n_frames - 1)  # (3, T, N + 2)
    s = z[..., : model.latent_dim]
    torch.testing.assert_close(z[..., model.latent_dim :], u[:, None].expand(3, CFG.n_frames, 2))
    points, _ = to_points(ds, model.schema)  # as the xarray layer makes them
    expected = dataset_values(ds)
    for dtype in (F64, torch.float32):  # float32 points: indices and snapping stay exact
        out = model.decode(s, torch.as_tensor(points, dtype=dtype))
        assert out.shape == (3, CFG.n_frames, CFG.ny * CFG.nx, 3)
        np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-12)
    fields = model.state_to_fields(s).numpy()  # (run, time, c, lat, lon)
    np.testing.assert_allclose(
        fields, np.moveaxis(expected.reshape(3, CFG.n_frames, CFG.ny, CFG.nx, 3), -1, 2), atol=1e-12
    )
    torch.testing.assert_close(model.grid_points(), torch.as_tensor(points), rtol=0, atol=0)
    assert float(abs(ds.u.isel(time=-1)).max()) > 1e-3  # the waves did move


def test_vector_field_batches_over_leading_dims_and_ignores_u(case):
    model = case[0]
    gen = torch.Generator().manual_seed(0)
    s = 0.1 * torch.randn(2, 3, model.latent_dim, generator=gen, dtype=F64)
    f = model.vector_field(s, torch.zeros(2, 3, 2, dtype=F64))
    torch.testing.assert_close(f[1, 2], model.vector_field(s[1, 2], torch.ones(2, dtype=F64)))
    assert model.dt.shape == () and float(model.dt) == CFG.frame_interval


def linear_state(model: TsunamiModel, coef: np.ndarray) -> torch.Tensor:
    """State whose variable ``c`` is ``coef[c] @ (1, x_km, y_km)`` at every element."""
    pos = model.element_positions() / 1000.0
    ch = model.state_channels()
    c = torch.as_tensor(coef)[ch]
    return c[:, 0] + c[:, 1] * pos[:, 0] + c[:, 2] * pos[:, 1]


def test_decoder_is_bilinear_and_prepared_broadcasts(case):
    model = case[0]
    cfg, rng = CFG, np.random.default_rng(3)
    coef = rng.normal(size=(3, 3))
    s = linear_state(model, coef)
    # points whose stencils avoid the wall faces: half a cell inside the box of centres
    row = rng.uniform(0.5, cfg.ny - 1.5, 50)
    col = rng.uniform(0.5, cfg.nx - 1.5, 50)
    x = -cfg.length / 2 + (col + 0.5) * cfg.dx
    y = -cfg.length / 2 + (row + 0.5) * cfg.dy
    lat, lon = cfg.to_latlon(x, y)
    points = torch.as_tensor(model.schema.coord_norm.normalize(np.stack([lat, lon], -1)))
    xk, yk = cfg.to_xy(lat, lon)
    expected = coef[:, 0] + np.stack([xk, yk], -1) / 1000.0 @ coef[:, 1:].T
    np.testing.assert_allclose(model.decode(s, points).numpy(), expected, rtol=1e-12, atol=1e-9)

    gen = torch.Generator().manual_seed(1)
    k, t, p = 4, 3, 7
    states = torch.randn(k, t, model.latent_dim, generator=gen, dtype=F64)
    pts = 2 * torch.rand(t, p, 2, generator=gen, dtype=F64) - 1
    prepared = model.prepare_points(pts)
    assert prepared.shape == (t, p, 24)
    out = model.decode_prepared(states, prepared)
    assert out.shape == (k, t, p, 3)
    torch.testing.assert_close(out, model.decode(states, pts), rtol=0, atol=0)
    torch.testing.assert_close(out[2, 1], model.decode(states[2, 1], pts[1]), rtol=0, atol=0)
    assert model.decode(states[:, 0], pts[0]).shape == (k, p, 3)
    # outside the box of cell centres: clamped to the nearest edge
    edge = torch.tensor([[1.0, -1.0], [0.3, 1.0]], dtype=F64)
    far = torch.tensor([[1.7, -1.2], [0.3, 3.0]], dtype=F64)
    torch.testing.assert_close(model.decode(states, far), model.decode(states, edge))


def test_gradients_of_vector_field_and_decoder():
    cfg = TsunamiConfig(nx=4, ny=5, n_frames=2)
    cfg = TsunamiConfig(nx=4, ny=5, n_frames=2, frame_interval=2.5 * cfg.max_time_step)
    model = TsunamiModel(cfg)
    gen = torch.Generator().manual_seed(0)
    # random states: velocities far from the upwind switch at 0
    s = torch.randn(1, model.latent_dim, generator=gen, dtype=F64, requires_grad=True)
    batch = torch.randn(2, 3, model.latent_dim, generator=gen, dtype=F64, requires_grad=True)
    u = torch.zeros(2, dtype=F64)
    assert torch.autograd.gradcheck(lambda s: model.vector_field(s, u), (s,))
    assert torch.autograd.gradcheck(lambda s: model.vector_field(s, u), (batch,), fast_mode=True)
    with torch.no_grad():  # the graph does not change the values
        torch.testing.assert_close(
            model.vector_field(batch, u), model.vector_field(batch.detach(), u), rtol=0, atol=0
        )
    pts = 0.9 * (2 * torch.rand(6, 2, generator=gen, dtype=F64) - 1)  # off the grid lines
    pts.requires_grad_()
    assert torch.autograd.gradcheck(model.decode, (s, pts))
    assert torch.autograd.gradcheck(model.decode, (batch, pts), fast_mode=True)
    src = (0.5 * torch.randn(2, 2, generator=gen, dtype=F64)).requires_grad_()
    assert torch.autograd.gradcheck(model.initial_state, (src,))


def test_state_channels_and_distances(case):
    model, cfg = case[0], CFG
    ny, nx = cfg.ny, cfg.nx
    ch = model.state_channels()
    assert ch.dtype == torch.int64 and ch.shape == (model.latent_dim,)
    assert model.latent_dim == 3 * ny * nx - ny - nx
    variables = model.schema.variables
    counts = {v: int((ch == variables.index(v)).sum()) for v in variables}
    assert counts == {"eta": ny * nx, "u": ny * (nx - 1), "v": (ny - 1) * nx}
    assert ch[0] == variables.index("eta") and ch[-1] == variables.index("v")

    query_xy = np.array([[1.2e5, -3.4e5], [-4.0e5, 2.0e5]])
    lat, lon = cfg.to_latlon(query_xy[:, 0], query_xy[:, 1])
    points = torch.as_tensor(model.schema.coord_norm.normalize(np.stack([lat, lon], -1)))
    d = model.distances(points)
    assert d.shape == (model.latent_dim, 2)
    # eta at row 2, column 3 (cell centre); u at row 4 east of column 6 (face x = -L/2 + 7 dx)
    i_eta = 2 * nx + 3
    i_u = ny * nx + 4 * (nx - 1) + 6
    for i, (x, y) in (
        (i_eta, (cfg.x[3], cfg.y[2])),
        (i_u, (-cfg.length / 2 + 7 * cfg.dx, cfg.y[4])),
    ):
        hand = np.hypot(query_xy[:, 0] - x, query_xy[:, 1] - y) / 1000.0
        np.testing.assert_allclose(d[i].numpy(), hand, rtol=1e-12)
    # v at row 1 north of column 0 (face y = -L/2 + 2 dy)
    i_v = ny * nx + ny * (nx - 1) + 1 * nx + 0
    pos = model.element_positions()[i_v].tolist()
    assert pos == pytest.approx([cfg.x[0], -cfg.length / 2 + 2 * cfg.dy], abs=1e-6)


def test_schema_agrees_with_build_schema_of_simulate(case):
    model, _, ds = case
    ref, s = build_schema(ds, params=["src_lat", "src_lon"]), model.schema
    for name in (
        "variables",
        "variable_attrs",
        "coords",
        "coord_attrs",
        "coord_norm",
        "grid",
        "params",
        "param_attrs",
        "time_origin",
        "time_step",
        "time_units",
        "time_is_datetime",
        "n_frames",
        "frame_times",
        "geometry",
    ):
        assert getattr(s, name) == getattr(ref, name), name
    assert s.output_norm.offset == (0.0,) * 3 and s.output_norm.scale == (1.0,) * 3
    assert s.attrs["source"] == "xlevda.systems.tsunami_model.TsunamiModel"
    assert '"nx": 10' in s.attrs["config"]
    assert SurrogateSchema.from_dict(s.to_dict()) == s
    # the parameter range is the one sample_sources draws from: the south-west quarter
    half = math.degrees(CFG.length / 2 / EARTH_RADIUS)
    east = math.degrees(CFG.length / 2 / (EARTH_RADIUS * math.cos(math.radians(CFG.center_lat))))
    assert s.param_range[0] == pytest.approx((CFG.center_lat - half, CFG.center_lat), abs=1e-12)
    assert s.param_range[1] == pytest.approx((CFG.center_lon - east, CFG.center_lon), abs=1e-12)
    draws = sample_sources(4000, seed=0, config=CFG)
    u = s.param_norm.normalize(np.stack([draws["src_lat"], draws["src_lon"]], -1))
    assert np.abs(u).max() <= 1.0 and np.abs(u).max() > 0.999
    assert isinstance(model, FullStateModel) and isinstance(model, Surrogate)
    # another horizon
    cfg6 = TsunamiConfig(nx=10, ny=9, n_frames=6)
    ref6 = build_schema(simulate(43.0, 164.0, cfg6), params=["src_lat", "src_lon"])
    s6 = TsunamiModel(CFG, n_frames=6).schema
    assert (s6.frame_times, s6.time_step, s6.n_frames) == (
        ref6.frame_times,
        ref6.time_step,
        ref6.n_frames,
    )


def test_bad_input_raises_clear_errors(case):
    model = case[0]
    n, u = model.latent_dim, torch.zeros(2, 2, dtype=F64)
    with pytest.raises(ShapeError, match=rf"\(\.\.\., N\) with N = .* = {n} .*got \(2, {n + 1}\)"):
        model.vector_field(torch.zeros(2, n + 1, dtype=F64), u)
    with pytest.raises(ShapeError, match=r"u must have shape \(\.\.\., 2\).*got \(2, 3\)"):
        model.vector_field(torch.zeros(2, n, dtype=F64), torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ShapeError, match=r"points must have shape \(\.\.\., P, 2\).*got \(5, 3\)"):
        model.decode(torch.zeros(n, dtype=F64), torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ShapeError, match=r"got \(2,\)"):
        model.prepare_points(torch.zeros(2, dtype=F64))
    with pytest.raises(ShapeError, match=r"prepared must have shape \(\.\.\., P, 24\)"):
        model.decode_prepared(torch.zeros(n, dtype=F64), torch.zeros(5, 2, dtype=F64))
    with pytest.raises(ShapeError, match="do not broadcast"):
        model.decode(torch.zeros(3, n, dtype=F64), torch.zeros(4, 5, 2, dtype=F64))
    with pytest.raises(ShapeError, match=r"points must have shape \(P, 2\)"):
        model.distances(torch.zeros(3, 4, 2, dtype=F64))
    with pytest.raises(ShapeError, match=r"got \(3, 1\)"):
        model.initial_state(torch.zeros(3, 1, dtype=F64))
    with pytest.raises(ConfigError, match="n_frames must be an integer >= 2"):
        TsunamiModel(CFG, n_frames=1)
    with pytest.raises(ConfigError, match="config must be a TsunamiConfig"):
        TsunamiModel({"nx": 8})
