"""Physics, batching, labelling and input checks of the Kolmogorov-flow simulator (tiny grids)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.systems.kolmogorov import (
    PERIOD,
    KolmogorovConfig,
    paper_config,
    sample_reynolds,
    simulate,
)

UNFORCED = {"forcing_amplitude": 0.0, "drag": 0.0}


def every_step(n_frames: int, **kwargs) -> KolmogorovConfig:
    """A config that keeps every output step from the start."""
    return KolmogorovConfig(n_frames=n_frames, burn_in=0, frame_stride=1, **kwargs)


def spectral_derivatives(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d/dx, d/dy)`` of periodic fields ``(..., ny, nx)`` on ``[0, 2 pi)^2`` via numpy FFTs."""
    ny, nx = field.shape[-2:]
    kx = np.fft.fftfreq(nx, 1.0 / nx)[None, :]
    ky = np.fft.fftfreq(ny, 1.0 / ny)[:, None]
    hat = np.fft.fft2(field)
    return np.fft.ifft2(1j * kx * hat).real, np.fft.ifft2(1j * ky * hat).real


def budget(ds: xr.Dataset, config: KolmogorovConfig) -> dict[str, np.ndarray]:
    """Domain means per (run, time): energy, forcing work, drag and viscous dissipation."""
    u, v, w = (ds[name].values for name in ("u", "v", "vorticity"))
    energy = 0.5 * (u**2 + v**2).mean((-2, -1))
    kf = config.forcing_wavenumber
    force = config.forcing_amplitude * np.sin(kf * ds.y.values)[:, None]
    return {
        "energy": energy,
        "enstrophy": 0.5 * (w**2).mean((-2, -1)),
        "work": (u * force).mean((-2, -1)),
        "drag": 2 * config.drag * energy,
        "viscous": ds.nu.values[:, None] * (w**2).mean((-2, -1)),
    }


@pytest.mark.parametrize("drag", [0.0, 0.3])
def test_taylor_green_vortex_decays_exactly(drag):
    cfg = every_step(6, nx=16, ny=20, output_step=0.5, forcing_amplitude=0.0, drag=drag)
    k = 2
    x, y = cfg.x[None, :], cfg.y[:, None]
    omega0 = 2 * k * np.sin(k * x) * np.sin(k * y)
    reynolds = np.array([5.0, 400.0])
    ds = simulate(reynolds, cfg, initial_vorticity=omega0)
    decay = np.exp(-(2 * k**2 / reynolds[:, None] + drag) * ds.time.values)[..., None, None]
    exact = {
        "u": np.sin(k * x) * np.cos(k * y) * decay,
        "v": -np.cos(k * x) * np.sin(k * y) * decay,
        "vorticity": omega0 * decay,
    }
    assert decay.min() < 0.05  # the fast run has decayed substantially
    for name, expected in exact.items():
        error = np.abs(ds[name].values - expected).max((-2, -1)) / np.abs(expected).max((-2, -1))
        assert error.max() < 1e-6, name


def test_energy_budget_closes():
    """dE/dt = forcing work - drag - viscous dissipation, integrated over a turbulent stretch."""
    cfg = every_step(41, nx=32, ny=32, output_step=0.01)
    cfg = replace(cfg, burn_in=100)
    ds = simulate([200.0, 1500.0], cfg)
    b = budget(ds, cfg)
    rate = b["work"] - b["drag"] - b["viscous"]
    size = np.abs(b["work"]) + b["drag"] + b["viscous"]
    h = cfg.output_step * cfg.frame_stride
    simpson = h / 3 * (rate[:, 0] + rate[:, -1] + 4 * rate[:, 1:-1:2].sum(1))
    simpson += h / 3 * 2 * rate[:, 2:-1:2].sum(1)
    change = b["energy"][:, -1] - b["energy"][:, 0]
    scale = h * size.sum(1)
    # Simpson's rule on frames h apart is accurate to O(h^4) of the budget terms
    np.testing.assert_array_less(np.abs(change - simpson), 1e-7 * scale)
    assert np.all(np.abs(change) > 1e-3 * scale)  # the energy did change


def test_time_stepping_is_fourth_order():
    final = {}
    for n in (1, 2, 4, 16):
        cfg = KolmogorovConfig(nx=24, ny=24, n_frames=1, burn_in=10, time_step=0.04 / n)
        assert cfg.substeps == n
        final[n] = simulate(1000.0, cfg).vorticity.values[0, 0]
    errors = [np.abs(final[n] - final[16]).max() for n in (1, 2, 4)]
    assert errors[0] > 1e-6  # measurable at the coarsest step
    np.testing.assert_allclose(np.divide(errors[:-1], errors[1:]), 16.0, rtol=0.1)


def test_inviscid_unforced_flow_conserves_energy_and_enstrophy():
    """The dealiased nonlinear term conserves both quadratic invariants (Galerkin truncation)."""
    cfg = KolmogorovConfig(nx=24, ny=18, n_frames=4, burn_in=0, frame_stride=10, **UNFORCED)
    ds = simulate(np.inf, cfg)
    assert float(ds.nu[0]) == 0.0
    b = budget(ds, cfg)
    vorticity_change = np.abs(ds.vorticity[0, -1] - ds.vorticity[0, 0]).max()
    assert float(vorticity_change) > 0.3 * float(np.abs(ds.vorticity[0, 0]).max())
    for name in ("energy", "enstrophy"):
        np.testing.assert_allclose(b[name], b[name][:, [0] * 4], rtol=1e-7, err_msg=name)


def test_stable_at_re_1500_over_the_benchmark_horizon_on_64x64():
    cfg = KolmogorovConfig(n_frames=7, frame_stride=50, burn_in=0)
    assert (cfg.nx, cfg.ny) == (64, 64)
    ds = simulate(1500.0, cfg)
    assert ds.time.values[-1] == pytest.approx(12.0)  # burn-in plus the 200 benchmark steps
    speed = np.sqrt(ds.u**2 + ds.v**2).max(("x", "y")).values
    assert np.all(np.isfinite(ds.vorticity.values))
    assert np.all(speed < cfg.max_velocity)
    assert np.all(speed > 1.0)  # the forcing keeps it going


def test_short_run_on_the_paper_grid_is_finite():
    cfg = replace(paper_config(), n_frames=2, burn_in=0)
    ds = simulate(1500.0, cfg, dtype=torch.float32)
    assert ds.sizes["x"] == 150 and ds.vorticity.dtype == np.float32
    assert np.all(np.isfinite(ds.vorticity.values))


@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_batched_runs_equal_single_runs(batch_size):
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=3, burn_in=5, frame_stride=5)
    reynolds = sample_reynolds(3, seed=2)["Re"]
    batch = simulate(reynolds, cfg, batch_size=batch_size)
    alone = simulate(reynolds[2], cfg)
    assert float(np.abs(batch.vorticity[2] - batch.vorticity[0]).max()) > 1e-4
    for name in ("u", "v", "vorticity"):
        np.testing.assert_allclose(batch[name][2], alone[name][0], rtol=0, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    shift_x=st.integers(0, 19),
    shift_y=st.sampled_from([0, 4, 8, 12]),
    reynolds=st.floats(50.0, 2000.0),
)
def test_shifts_commute_with_the_flow(seed, shift_x, shift_y, reynolds):
    """Translations in x, and in y by forcing periods (here 4 points), are symmetries."""
    cfg = KolmogorovConfig(nx=20, ny=16, n_frames=2, burn_in=0, frame_stride=3)
    omega0 = np.random.default_rng(seed).normal(size=(cfg.ny, cfg.nx))
    shifted = np.roll(omega0, (shift_y, shift_x), axis=(0, 1))
    ds = simulate([reynolds, reynolds], cfg, initial_vorticity=np.stack([omega0, shifted]))
    w = ds.vorticity.values[:, -1]
    expected = np.roll(w[0], (shift_y, shift_x), axis=(0, 1))
    np.testing.assert_allclose(w[1], expected, rtol=0, atol=1e-11 * np.abs(w[0]).max())


def test_velocity_is_divergence_free_and_matches_the_vorticity():
    cfg = KolmogorovConfig(nx=24, ny=20, n_frames=3, burn_in=0, frame_stride=10)
    ds = simulate([600.0, 1200.0], cfg)
    u_x, u_y = spectral_derivatives(ds.u.values)
    v_x, v_y = spectral_derivatives(ds.v.values)
    gradient = np.abs(u_x).max()
    assert np.abs(u_x + v_y).max() < 1e-12 * gradient
    np.testing.assert_allclose(v_x - u_y, ds.vorticity.values, rtol=0, atol=1e-12 * gradient)


def test_initial_condition_is_seeded_shared_and_scaled():
    cfg = every_step(1, nx=32, ny=32)
    ds = simulate([500.0, 900.0, 1500.0], cfg)
    w = ds.vorticity.values[:, 0]
    scale = np.abs(w[0]).max()
    np.testing.assert_allclose(w[1:], w[[0, 0]], rtol=0, atol=1e-13 * scale)
    speed = np.sqrt(ds.u.values**2 + ds.v.values**2)
    assert speed.max() == pytest.approx(cfg.initial_max_velocity, rel=1e-12)
    # the same seed alone as in a batch of three: equal up to the batched FFTs' round-off
    again = simulate(700.0, cfg).vorticity.values[0, 0]
    np.testing.assert_allclose(again, w[0], rtol=0, atol=1e-13 * scale)
    other = simulate(700.0, replace(cfg, seed=1))
    assert np.abs(other.vorticity.values[0, 0] - w[0]).max() > 0.1 * np.abs(w[0]).max()


def test_initial_condition_is_the_same_field_on_every_grid():
    # the initial field has wavenumbers up to 4 * peak = 16: resolved from 49 points on
    coarse = simulate(1000.0, every_step(1, nx=50, ny=50)).vorticity.values[0, 0]
    fine = simulate(1000.0, every_step(1, nx=100, ny=100)).vorticity.values[0, 0]
    ratio = fine[::2, ::2] / coarse  # differ only by the max-speed scaling on each grid
    big = np.abs(coarse) > 0.1 * np.abs(coarse).max()
    np.testing.assert_allclose(ratio[big], np.median(ratio[big]), rtol=1e-8)


def test_initial_energy_spectrum_peaks_at_the_peak_wavenumber():
    cfg = every_step(1, nx=64, ny=64)
    spectra = []
    for seed in range(4):
        ds = simulate(1000.0, replace(cfg, seed=seed))
        hat = [np.fft.fft2(ds[name].values[0, 0]) for name in ("u", "v")]
        kx, ky = np.meshgrid(np.fft.fftfreq(64, 1 / 64), np.fft.fftfreq(64, 1 / 64))
        shell = np.rint(np.hypot(kx, ky)).astype(int).ravel()
        power = (np.abs(hat[0]) ** 2 + np.abs(hat[1]) ** 2).ravel()
        spectra.append(np.bincount(shell, power)[:20])
    mean = np.mean(spectra, axis=0)
    assert int(np.argmax(mean)) == 4
    assert mean[12] < 1e-3 * mean[4] and mean[0] == pytest.approx(0.0, abs=1e-20)


def test_dataset_is_cf_labelled(tmp_path):
    cfg = KolmogorovConfig(nx=16, ny=14, n_frames=3, burn_in=2, frame_stride=3)
    ds = simulate([800.0, 1250.0], cfg, dtype=torch.float32)
    assert ds.vorticity.dims == ("run", "time", "y", "x")
    assert ds.u.dtype == np.float32
    np.testing.assert_allclose(ds.time.values, [0.08, 0.2, 0.32])
    assert ds.time.attrs["axis"] == "T" and ds.time.attrs["units"] == "1"
    for name, axis, n in (("x", "X", 16), ("y", "Y", 14)):
        attrs = ds[name].attrs
        assert attrs["axis"] == axis and attrs["periodic"] == "true"
        assert attrs["period"] == pytest.approx(PERIOD)
        np.testing.assert_allclose(ds[name].values, PERIOD * np.arange(n) / n)
    np.testing.assert_allclose(ds.Re, [800.0, 1250.0])
    np.testing.assert_allclose(ds.nu, [1 / 800.0, 1 / 1250.0])
    assert ds.Re.dims == ("run",) and "long_name" in ds.nu.attrs
    for name in ("u", "v", "vorticity"):
        assert {"units", "long_name"} <= set(ds[name].attrs)
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert json.loads(ds.attrs["config"])["nx"] == 16
    assert ds.attrs["integration_steps"] == cfg.substeps * 8
    assert ds.attrs["time_step"] <= cfg.max_time_step
    path = tmp_path / "kolmogorov.nc"
    ds.to_netcdf(path)
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back, ds)


def test_paper_setting():
    cfg = paper_config()
    assert (cfg.nx, cfg.ny, cfg.output_step, cfg.burn_in) == (150, 150, 0.04, 100)
    assert (cfg.n_frames, cfg.frame_stride) == (40, 5)
    assert cfg.frame_times[0] == pytest.approx(4.0)
    assert np.diff(cfg.frame_times) == pytest.approx(0.2)
    assert cfg.output_step / cfg.substeps <= cfg.stable_time_step / 2


def test_reynolds_numbers_are_drawn_uniformly_and_reproducibly():
    re = sample_reynolds(2000, seed=3)["Re"]
    assert re.min() >= 500 and re.max() < 1500
    assert abs(re.mean() - 1000) < 20
    np.testing.assert_array_equal(re, sample_reynolds(2000, 3)["Re"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nx": 12}, r"nx must be an integer >= 13 .*forcing survives 2/3 dealiasing.*got 12"),
        ({"ny": 16.0}, r"ny must be an integer >= 13 .*got 16.0"),
        ({"nx": 30, "forcing_wavenumber": 10}, r"nx must be an integer >= 31 .*got 30"),
        ({"forcing_wavenumber": 0}, r"forcing_wavenumber must be an integer >= 1, got 0"),
        ({"drag": -0.1}, r"drag must be finite and >= 0, got -0.1"),
        ({"output_step": 0.0}, r"output_step must be finite and > 0, got 0.0"),
        ({"n_frames": 0}, r"n_frames must be an integer >= 1, got 0"),
        ({"burn_in": -1}, r"burn_in must be >= 0, got -1"),
        ({"max_velocity": 2.0}, r"max_velocity must be .*>= initial_max_velocity = 3.0, got 2.0"),
        ({"time_step": 0.0}, r"time_step must be None or in \(0, 0.0190476"),
        (
            {"time_step": 0.02},
            r"time_step must be None or in \(0, 0.0190476\], the RK4 stability limit for "
            r"max_velocity = 5.0 on a 64x64 grid, got 0.02",
        ),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        KolmogorovConfig(**kwargs)


def test_bad_simulation_input_is_rejected():
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=1, burn_in=0)
    with pytest.raises(VariableError, match=r"Re\[1\] = -100.0 is invalid: .* > 0 \(viscosity"):
        simulate([500.0, -100.0], cfg)
    with pytest.raises(VariableError, match=r"Re\[0\] = 0.0 is invalid"):
        simulate(0.0, cfg)
    with pytest.raises(VariableError, match=r"Re\[0\] = nan is invalid"):
        simulate(np.nan, cfg)
    with pytest.raises(VariableError, match=r"Re must be .* 1-D array .* got shape \(2, 1\)"):
        simulate([[500.0], [600.0]], cfg)
    with pytest.raises(
        ShapeError, match=r"initial_vorticity must have shape \(ny, nx\) = \(16, 16\)"
    ):
        simulate(500.0, cfg, initial_vorticity=np.zeros((16, 15)))
    with pytest.raises(VariableError, match=r"initial_vorticity must be finite"):
        simulate(500.0, cfg, initial_vorticity=np.full((16, 16), np.nan))
    with pytest.raises(ConfigError, match=r"batch_size must be None or an integer >= 1, got 0"):
        simulate(500.0, cfg, batch_size=0)
    with pytest.raises(ConfigError, match=r"dtype must be a floating torch.dtype"):
        simulate(500.0, cfg, dtype=torch.int64)
    with pytest.raises(ConfigError, match=r"n_runs must be an integer >= 1, got 0"):
        sample_reynolds(0)
    with pytest.raises(ConfigError, match=r"0 < low < high, got 1500.0 and 500.0"):
        sample_reynolds(3, low=1500.0, high=500.0)


def test_flow_too_fast_for_the_time_step_is_reported():
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=2, burn_in=0)
    x, y = cfg.x[None, :], cfg.y[:, None]
    fast = 400 * np.sin(2 * x) * np.sin(2 * y)  # speed 100
    with pytest.raises(ConfigError, match=r"run 1 \(Re = 900.0\) reached speed 100.0.* at t = 0,"):
        simulate([900.0, 900.0], cfg, initial_vorticity=np.stack([fast / 100, fast]))


def test_initial_seed_gives_each_run_its_own_field():
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=2, burn_in=0, frame_stride=2)
    ds = simulate([800.0, 800.0, 800.0], cfg, initial_seed=[cfg.seed, 7, 8])
    np.testing.assert_array_equal(ds.initial_seed.values, [cfg.seed, 7, 8])
    assert ds.initial_seed.dims == ("run",) and "long_name" in ds.initial_seed.attrs
    shared = simulate(800.0, cfg)
    # the config's own seed reproduces the shared default field (batched: to round-off)
    np.testing.assert_allclose(ds.vorticity[0], shared.vorticity[0], rtol=0, atol=1e-12)
    w0 = ds.vorticity.isel(time=0).values
    assert np.abs(w0[1] - w0[2]).max() > 0.5 * np.abs(w0[1]).max()
    # each seeded run equals a shared-field simulation with that seed in the config
    alone = simulate(800.0, replace(cfg, seed=8))
    np.testing.assert_allclose(ds.vorticity[2], alone.vorticity[0], rtol=0, atol=1e-12)
    assert "initial_seed" not in shared.coords


def test_sample_reynolds_random_initial_keeps_the_reynolds_draws():
    plain = sample_reynolds(5, seed=3)
    draws = sample_reynolds(5, seed=3, random_initial=True)
    np.testing.assert_array_equal(plain["Re"], draws["Re"])
    seeds = draws["initial_seed"]
    assert seeds.shape == (5,) and len(set(seeds.tolist())) == 5 and (seeds >= 0).all()
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=1, burn_in=0)
    ds = simulate(**sample_reynolds(2, seed=0, random_initial=True), config=cfg)
    assert set(ds.coords) >= {"Re", "nu", "initial_seed"}
    with pytest.raises(ConfigError, match="random_initial must be a bool"):
        sample_reynolds(2, random_initial=1)


def test_bad_initial_seed_is_rejected():
    cfg = KolmogorovConfig(nx=16, ny=16, n_frames=1, burn_in=0)
    with pytest.raises(ShapeError, match="initial_seed must have shape"):
        simulate([900.0, 900.0], cfg, initial_seed=[1, 2, 3])
    with pytest.raises(VariableError, match="initial_seed must hold integers >= 0"):
        simulate([900.0, 900.0], cfg, initial_seed=[1, -2])
    with pytest.raises(VariableError, match="initial_seed must hold integers >= 0"):
        simulate([900.0], cfg, initial_seed=[1.5])
    with pytest.raises(ConfigError, match="initial_seed and initial_vorticity"):
        simulate([900.0], cfg, initial_seed=[1], initial_vorticity=np.zeros((16, 16)))
