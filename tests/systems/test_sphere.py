"""Physics, transforms, batching, labelling and input checks of the spherical shallow water."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

th = pytest.importorskip(
    "torch_harmonics", reason="torch-harmonics (extra 'sphere') is not installed"
)

from xlevda.errors import ConfigError, VariableError  # noqa: E402
from xlevda.systems.sphere import sample_forcing, simulate  # noqa: E402
from xlevda.systems.sphere_config import (  # noqa: E402
    HOUR,
    PAPER_HYPERVISCOSITY,
    GalewskyJet,
    SolidBodyFlow,
    SphereConfig,
    paper_config,
)
from xlevda.systems.sphere_dynamics import SphereOperators  # noqa: E402
from xlevda.systems.sphere_transforms import SphericalTransforms  # noqa: E402

DAY = 86400.0


def area_integral(field: np.ndarray, config: SphereConfig) -> np.ndarray:
    """Exact integral over the sphere of a field resolved on the Gauss grid (last two dims)."""
    weights = np.polynomial.legendre.leggauss(config.nlat)[1]  # in sin(lat), ascending
    dlon = 2 * np.pi / config.nlon
    return config.radius**2 * dlon * np.einsum("...ij,i->...", field, weights)


def test_transforms_match_torch_harmonics_and_invert_exactly():
    nlat, size = 16, 11
    tf = SphericalTransforms(nlat, size, torch.float64, torch.device("cpu"))
    kw = {"lmax": size, "mmax": size, "grid": "legendre-gauss", "csphase": False}
    sht, isht, vsht, ivsht = (
        cls(nlat, 2 * nlat, **kw).double()
        for cls in (th.RealSHT, th.InverseRealSHT, th.RealVectorSHT, th.InverseRealVectorSHT)
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, nlat, 2 * nlat, dtype=torch.float64, generator=g)
    c = vsht(x)
    np.testing.assert_allclose(tf.sht(x), sht(x), rtol=0, atol=1e-14)
    np.testing.assert_allclose(tf.isht(c[:, 0]), isht(c[:, 0]), rtol=0, atol=1e-13)
    np.testing.assert_allclose(tf.ivsht(c), ivsht(c), rtol=0, atol=1e-13)
    # torch-harmonics 0.8 rounds 1 / (l (l + 1)) to float32 in its forward vector transform
    assert float((tf.vsht(x) - c).abs().max()) <= 1e-7 * float(c.abs().max())
    coeffs = torch.randn(2, 2, size, size, dtype=torch.complex128, generator=g).tril()
    coeffs[..., 0].imag = 0.0
    coeffs[..., 0, 0] = 0.0  # a vector field has no l = 0 component
    np.testing.assert_allclose(tf.vsht(tf.ivsht(coeffs)), coeffs, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tf.sht(tf.isht(coeffs[0])), coeffs[0], rtol=0, atol=1e-13)


def williamson_2(lat, lon, config: SphereConfig):
    """Analytic wind and height anomaly (global mean removed) of Williamson test case 2."""
    flow = config.initial
    a = math.radians(flow.alpha)
    lat, lon = np.radians(lat)[:, None], np.radians(lon)[None, :]
    u = flow.speed * (np.cos(lat) * math.cos(a) + np.cos(lon) * np.sin(lat) * math.sin(a))
    v = -flow.speed * math.sin(a) * np.sin(lon) + 0 * lat
    factor = (config.radius * config.omega * flow.speed + flow.speed**2 / 2) / config.gravity
    h = -factor * (np.sin(lat) * math.cos(a) - np.cos(lon) * np.cos(lat) * math.sin(a)) ** 2
    return u, v, h + factor / 3  # the mean of the square over the sphere is 1/3


@pytest.mark.parametrize(
    ("alpha", "omega", "nu", "tol"),
    [
        (0.0, 7.292e-5, PAPER_HYPERVISCOSITY, 1e-3),
        (60.0, 0.0, PAPER_HYPERVISCOSITY, 1e-3),
        (0.0, 7.292e-5, 0.0, 1e-12),
    ],
)
def test_williamson_2_is_balanced_and_stays_steady_for_5_days(alpha, omega, nu, tol):
    """Case 2 as published (alpha = 0), and tilted without rotation so that all orders m act;
    without hyperdiffusion it is steady to round-off."""
    cfg = SphereConfig(
        nlat=16,
        n_frames=2,
        frame_interval=5 * DAY,
        mean_height=2.94e4 / 9.80616,
        cfl=1.0,
        max_wind=60.0,
        omega=omega,
        hyperviscosity=nu,
        initial=SolidBodyFlow(alpha=alpha),
    )
    ds = simulate(0.0, 1.0, cfg)
    u, v, h = williamson_2(ds.lat.values, ds.lon.values, cfg)
    scale = np.abs(h).max()
    start, end = ds.isel(run=0, time=0), ds.isel(run=0, time=1)
    np.testing.assert_allclose(start.height, h, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(start.u, u, rtol=0, atol=1e-9 * cfg.initial.speed)
    np.testing.assert_allclose(start.v, v, rtol=0, atol=1e-9 * cfg.initial.speed)
    wind_error = np.hypot(np.linalg.norm(end.u - u), np.linalg.norm(end.v - v))
    assert wind_error < tol * np.hypot(np.linalg.norm(u), np.linalg.norm(v))
    assert np.linalg.norm(end.height - h) < tol * np.linalg.norm(h)
    assert ds.attrs["integration_steps"] > 50


def test_unperturbed_galewsky_jet_is_in_balance():
    cfg = SphereConfig(
        nlat=32,
        n_frames=2,
        frame_interval=DAY,
        hyperviscosity=0.0,
        initial=GalewskyJet(perturbation=0.0),
    )
    ds = simulate(0.0, 1.0, cfg).isel(run=0)
    jet = ds.u[0].max("lon").values
    assert 60.0 < jet.max() < 80.0  # the 80 m/s jet, smoothed by truncation at T21
    assert abs(ds.lat.values[np.argmax(jet)] - 45.0) < 6.0 and abs(jet[ds.lat.values < 0]).max() < 5
    for name in ("u", "height"):
        change = np.linalg.norm(ds[name][1] - ds[name][0]) / np.linalg.norm(ds[name][0])
        assert change < 1e-12, (name, change)
    assert float(abs(ds.v).max()) < 1e-10


def test_mass_is_conserved_and_the_forcing_acts():
    cfg = SphereConfig(nlat=16, n_frames=5, frame_interval=6 * HOUR)
    ds = simulate([0.0, 30.0, 30.0], [1.0, 1.0, 4.0], cfg)
    height = ds.height.values
    mass = area_integral(height, cfg)
    assert np.abs(mass).max() <= 1e-12 * area_integral(np.abs(height), cfg).max()
    forced = np.abs(height[1:, -1] - height[0, -1]).max(axis=(-2, -1))
    assert (forced > 5.0).all()  # metres of response to 30 m/h after a day
    assert np.abs(height[2, -1] - height[1, -1]).max() > 1.0  # sigma matters too


def test_forcing_follows_the_sun():
    cfg = SphereConfig(nlat=16)
    op = SphereOperators(cfg, torch.float64, torch.device("cpu"))
    amp = torch.tensor([[[2.0]]], dtype=torch.float64)
    width = torch.tensor([[[1.5]]], dtype=torch.float64)
    cases = ((6 * HOUR, 90.0, 0.4 * math.sin(math.pi / 84)), (252 * HOUR, 180.0, 0.4))
    for t, lon_c, lat_c in (*cases, (504 * HOUR, 0.0, 0.0)):
        force = op.forcing(t, amp, width)[0].numpy()
        lat, lon = np.degrees(op.lat_np[:, 0]), np.degrees(op.lon_np)
        expected = 2.0 * np.exp(-(((np.radians(lat)[:, None] - lat_c) / 1.5) ** 2))
        expected = expected * np.cos(np.radians(lon[None, :] - lon_c))
        np.testing.assert_allclose(force, expected, rtol=0, atol=1e-12)
        assert lon[force.max(axis=0).argmax()] == pytest.approx(lon_c % 360)


@settings(max_examples=30, deadline=None)
@given(
    t=st.floats(0.0, 1.0e8),
    declination=st.floats(0.0, 1.5),
    width=st.floats(0.05, 10.0),
)
def test_forcing_adds_no_mass(t, declination, width):
    cfg = SphereConfig(nlat=16, max_declination=declination)
    op = SphereOperators(cfg, torch.float64, torch.device("cpu"))
    kw = {"dtype": torch.float64}
    force = op.forcing(t, torch.ones(1, 1, 1, **kw), torch.full((1, 1, 1), width, **kw))
    coeffs = op.sht(force)[0]
    assert float(coeffs[0, 0].abs()) <= 1e-13 * float(coeffs.abs().max())
    assert float(coeffs[:, 0].abs().max()) <= 1e-13 * float(coeffs.abs().max())  # no m = 0


@pytest.mark.parametrize("batch_size", [None, 2])
def test_batched_runs_equal_single_runs(batch_size):
    cfg = SphereConfig(nlat=16, n_frames=3, frame_interval=4 * HOUR)
    params = sample_forcing(3, seed=4, config=cfg)
    batch = simulate(**params, config=cfg, batch_size=batch_size)
    alone = simulate(params["h_f0"][2], params["sigma"][2], cfg)
    for name in ("u", "v", "height"):
        scale = float(abs(alone[name]).max())
        np.testing.assert_allclose(batch[name][2], alone[name][0], rtol=0, atol=1e-12 * scale)
    assert float(abs(batch.height[2, -1] - batch.height[0, -1]).max()) > 0.1


def test_extreme_parameters_are_stable_on_the_cpu_grid():
    cfg = SphereConfig(n_frames=3, frame_interval=6 * HOUR)
    ds = simulate([0.1, 0.1, 30.0, 30.0], [1.0, 4.0, 1.0, 4.0], cfg, dtype=torch.float32)
    assert ds.u.dtype == np.float32 and (cfg.nlat, cfg.nlon) == (64, 128)
    for name in ("u", "v", "height"):
        assert np.isfinite(ds[name].values).all()
    speed = np.hypot(ds.u, ds.v).max(("lat", "lon"))
    assert float(speed.max()) < 100.0 and float(abs(ds.height).max()) < 2000.0
    # the strongest forcing moves the height by hundreds of metres in 12 h, the weakest by less
    # than a metre; sigma matters at the strong forcing
    h = ds.height.isel(time=-1).values
    assert np.abs(h[2:] - h[:2]).max(axis=(-2, -1)).min() > 100.0
    assert np.abs(h[0] - h[1]).max() < 1.0 < 10.0 < np.abs(h[2] - h[3]).max()


def test_too_fast_wind_stops_the_integration():
    cfg = SphereConfig(nlat=8, n_frames=2, max_wind=20.0, initial=SolidBodyFlow())
    with pytest.raises(
        ConfigError, match=r"run 0 \(h_f0 = 1.0, sigma = 2.0\) reached wind 38 m s-1 at"
    ):
        simulate(1.0, 2.0, cfg)


def test_dataset_is_cf_labelled():
    cfg = SphereConfig(nlat=8, n_frames=3, frame_interval=HOUR, spinup=2 * HOUR)
    ds = simulate([1.0, 2.0], [3.0, 1.5], cfg)
    assert ds.height.dims == ("run", "time", "lat", "lon")
    assert dict(ds.sizes) == {"run": 2, "time": 3, "lat": 8, "lon": 16}
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert json.loads(ds.attrs["config"])["nlat"] == 8
    assert ds.attrs["initial_condition"] == "GalewskyJet"
    assert ds.time.values[0] == np.datetime64(cfg.start)
    assert (np.diff(ds.time.values) == np.timedelta64(3600, "s")).all()
    assert np.all(np.diff(ds.lat) > 0) and -90 < float(ds.lat[0]) < float(ds.lat[-1]) < 90
    np.testing.assert_allclose(ds.lon, np.arange(16) * 22.5)
    assert ds.lat.attrs["axis"] == "Y" and ds.lon.attrs["units"] == "degrees_east"
    assert "periodic" in ds.lon.attrs["comment"]
    assert ds.u.attrs["standard_name"] == "eastward_wind"
    assert ds.v.attrs["standard_name"] == "northward_wind"
    assert ds.height.attrs["standard_name"] == "geopotential_height_anomaly"
    for name in ("u", "v", "height"):
        assert {"units", "standard_name", "long_name"} <= set(ds[name].attrs)
    np.testing.assert_allclose(ds.h_f0, [1.0, 2.0])
    assert ds.h_f0.attrs["units"] == "m h-1" and ds.sigma.attrs["units"] == "radian"
    assert ds.sigma.dims == ("run",)


def test_spinup_continues_the_same_trajectory():
    cfg = SphereConfig(nlat=8, n_frames=3, frame_interval=HOUR)
    later = SphereConfig(nlat=8, n_frames=2, frame_interval=HOUR, spinup=HOUR)
    full, tail = simulate(10.0, 2.0, cfg), simulate(10.0, 2.0, later)
    np.testing.assert_allclose(tail.height[0], full.height[0, 1:], rtol=0, atol=1e-9)


def test_paper_setting_and_prior():
    cfg = paper_config()
    assert (cfg.nlat, cfg.nlon, cfg.truncation) == (256, 512, 170)
    assert cfg.substeps == 480 and cfg.frame_interval / cfg.substeps == 60.0
    assert cfg.substeps * (cfg.n_frames - 1) == 30240  # the paper's 21 days of 60 s steps
    params = sample_forcing(200, seed=1)
    assert 0.1 <= params["h_f0"].min() and params["h_f0"].max() <= 30.0
    assert 1.0 <= params["sigma"].min() and params["sigma"].max() <= 4.0
    assert params["h_f0"].std() > 5.0
    np.testing.assert_array_equal(params["sigma"], sample_forcing(200, seed=1)["sigma"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nlat": 7}, r"SphereConfig.nlat must be an even integer >= 8, got 7"),
        ({"nlat": 33}, r"nlat must be an even integer >= 8, got 33"),
        ({"n_frames": 0}, r"n_frames must be >= 1, got 0"),
        ({"mean_height": -1.0}, r"mean_height must be finite and > 0, got -1.0"),
        ({"hyperviscosity": -1.0}, r"hyperviscosity must be finite and >= 0, got -1.0"),
        ({"h_f0_range": (5.0, 1.0)}, r"h_f0_range must be a tuple \(low, high\).*\(5.0, 1.0\)"),
        ({"sigma_range": (0.0, 4.0)}, r"sigma_range must be .*0 < low <= high, got \(0.0, 4.0\)"),
        ({"cfl": 1.5}, r"cfl must be in \(0, 1\], got 1.5"),
        ({"time_step": 0.0}, r"time_step must be None or finite and > 0, got 0.0"),
        ({"initial": "galewsky"}, r"initial must be a GalewskyJet or SolidBodyFlow, got 'gal"),
        ({"start": "soon"}, r"start must be an ISO datetime"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SphereConfig(**kwargs)


def test_bad_initial_states_and_inputs_are_rejected():
    with pytest.raises(ConfigError, match=r"GalewskyJet.max_wind must be finite and > 0, got 0"):
        GalewskyJet(max_wind=0)
    with pytest.raises(ConfigError, match=r"SolidBodyFlow.alpha must be in \[0, 90\], got 120"):
        SolidBodyFlow(alpha=120)
    cfg = SphereConfig(nlat=8, n_frames=1)
    with pytest.raises(VariableError, match=r"h_f0\[1\] = -1.0 is outside the valid range \[0"):
        simulate([1.0, -1.0], [1.0, 1.0], cfg)
    with pytest.raises(VariableError, match=r"sigma\[0\] = 0.0 is outside .* \(0, inf\) radians"):
        simulate(1.0, 0.0, cfg)
    with pytest.raises(VariableError, match=r"sigma\[0\] = nan"):
        simulate(1.0, float("nan"), cfg)
    with pytest.raises(VariableError, match=r"equal length .* shapes \(2,\) and \(1,\)"):
        simulate([1.0, 2.0], [1.0], cfg)
    with pytest.raises(ConfigError, match=r"batch_size must be None or an integer >= 1, got 0"):
        simulate(1.0, 1.0, cfg, batch_size=0)
    with pytest.raises(ConfigError, match=r"dtype must be a floating torch.dtype"):
        simulate(1.0, 1.0, cfg, dtype=torch.int32)
    with pytest.raises(ConfigError, match=r"n_runs must be an integer >= 1, got 0"):
        sample_forcing(0)
