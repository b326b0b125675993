"""Physics, batching, labelling and input checks of the tsunami simulator (tiny grids)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from xlevda.errors import ConfigError, VariableError
from xlevda.systems.tsunami import (
    PAPER_FRAME_INTERVAL,
    TsunamiConfig,
    paper_config,
    sample_sources,
    simulate,
)


def centred(config: TsunamiConfig) -> tuple[float, float]:
    lat, lon = config.to_latlon(0.0, 0.0)
    return float(lat), float(lon)


def test_volume_is_conserved_with_coriolis_and_wall_reflections():
    cfg = TsunamiConfig(nx=24, ny=20, n_frames=11, frame_interval=4000.0)
    ds = simulate(**sample_sources(3, seed=1, config=cfg), config=cfg)
    volume = ds.eta.sum(("lat", "lon")).values * cfg.dx * cfg.dy
    bump = 2 * np.pi * cfg.sigma**2 * cfg.amplitude
    assert np.abs(volume - volume[:, :1]).max() <= 1e-6 * bump
    assert float(abs(ds.u).max()) > 0.01  # the waves did move


def test_centred_bump_without_coriolis_stays_symmetric():
    cfg = TsunamiConfig(nx=24, ny=24, n_frames=6, frame_interval=3000.0, coriolis=False)
    eta = simulate(*centred(cfg), cfg).eta.isel(run=0).values
    for mirrored in (eta[:, ::-1, :], eta[:, :, ::-1], eta.transpose(0, 2, 1)):
        np.testing.assert_allclose(mirrored, eta, rtol=0, atol=1e-13)


def peak_time(series: np.ndarray, times: np.ndarray) -> float:
    """Time of the maximum, refined by a parabola through the three samples around it."""
    k = int(np.argmax(series))
    a, b, c = series[k - 1 : k + 2]
    return float(times[k] + 0.5 * (a - c) / (a - 2 * b + c) * (times[1] - times[0]))


def test_front_travels_at_shallow_water_speed():
    cfg = TsunamiConfig(nx=60, ny=60, coriolis=False)
    times = np.arange(0.0, 12_000.0, 100.0)
    eta = simulate(*centred(cfg), cfg, output_times=times).eta.isel(run=0).values
    row = cfg.ny // 2
    radius = np.hypot(cfg.x, cfg.y[row])
    near, far = (int(np.argmin(abs(radius - d))) for d in (150e3, 350e3))
    t_near, t_far = (peak_time(eta[:, row, i], times) for i in (near, far))
    speed = (radius[far] - radius[near]) / (t_far - t_near)
    assert speed == pytest.approx(cfg.wave_speed, rel=0.05)


@pytest.mark.parametrize("batch_size", [None, 2, 3])
def test_batched_runs_equal_single_runs(batch_size):
    cfg = TsunamiConfig(nx=16, ny=16, n_frames=4)
    src = sample_sources(3, seed=2, config=cfg)
    batch = simulate(**src, config=cfg, batch_size=batch_size)
    alone = simulate(src["src_lat"][2], src["src_lon"][2], cfg)
    assert float(abs(alone.eta[0, -1]).max()) > 0.05
    for name in ("u", "v", "eta"):
        np.testing.assert_allclose(batch[name][2], alone[name][0], rtol=0, atol=1e-14)


def test_output_times_are_hit_exactly_and_dtype_follows():
    cfg = TsunamiConfig(nx=8, ny=8)
    seconds = np.array([0.0, 10.0, 333.3, 2000.0])
    ds = simulate(*centred(cfg), cfg, output_times=seconds, dtype=torch.float32)
    elapsed = (ds.time.values - ds.time.values[0]) / np.timedelta64(1, "ns") / 1e9
    np.testing.assert_allclose(elapsed, seconds, atol=1e-9)
    assert ds.eta.dtype == np.float32
    assert ds.attrs["max_time_step_seconds"] <= cfg.max_time_step


def test_default_frames_and_paper_setting():
    cfg = paper_config()
    assert (cfg.nx, cfg.ny, cfg.n_frames) == (150, 150, 51)
    assert cfg.max_time_step == pytest.approx(21.285, abs=1e-3)
    assert PAPER_FRAME_INTERVAL == pytest.approx(40 * cfg.max_time_step)
    small = TsunamiConfig(nx=4, ny=4, n_frames=3)
    ds = simulate(*centred(small), small)
    step = (ds.time.values[1] - ds.time.values[0]) / np.timedelta64(1, "ns") / 1e9
    assert step == pytest.approx(PAPER_FRAME_INTERVAL, abs=1e-9)


def test_sources_are_drawn_in_the_lower_left_quarter_and_reproducibly():
    cfg = TsunamiConfig()
    src = sample_sources(50, seed=3, config=cfg)
    x, y = cfg.to_xy(src["src_lat"], src["src_lon"])
    assert np.all((x >= -cfg.length / 2) & (x < 0) & (y >= -cfg.length / 2) & (y < 0))
    np.testing.assert_array_equal(src["src_lat"], sample_sources(50, 3, cfg)["src_lat"])


def test_dataset_is_cf_labelled():
    cfg = TsunamiConfig(nx=6, ny=5, n_frames=2)
    ds = simulate([43.0, 44.0], [164.0, 166.0], cfg)
    assert ds.eta.dims == ("run", "time", "lat", "lon")
    assert ds.attrs["Conventions"] == "CF-1.11"
    assert json.loads(ds.attrs["config"])["nx"] == 6
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert ds.time.values[0] == np.datetime64(cfg.start)
    assert ds.lat.attrs["standard_name"] == "latitude" and ds.lat.attrs["axis"] == "Y"
    assert ds.lon.attrs["units"] == "degrees_east" and ds.x.dims == ("lon",)
    assert ds.y.attrs["standard_name"] == "projection_y_coordinate"
    np.testing.assert_allclose(ds.src_lat, [43.0, 44.0])
    assert ds.src_lat.attrs["units"] == "degrees_north" and "long_name" in ds.src_lon.attrs
    assert ds.src_x.dims == ("run",) and ds.src_y.attrs["units"] == "m"
    for name in ("u", "v", "eta"):
        assert {"units", "standard_name", "long_name"} <= set(ds[name].attrs)
    assert ds.u.attrs["standard_name"] == "eastward_sea_water_velocity"
    np.testing.assert_allclose(ds.lat.mean(), cfg.center_lat, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nx": 3}, r"nx must be an integer >= 4, got 3"),
        ({"ny": 4.5}, r"ny must be an integer >= 4, got 4.5"),
        ({"depth": -1.0}, r"depth must be finite and > 0, got -1.0"),
        ({"n_frames": 0}, r"n_frames must be .*>= 1, got 0"),
        ({"cfl": 0.0}, r"cfl must be in \(0, 0.5\], got 0.0"),
        ({"cfl": 0.9}, r"cfl must be in \(0, 0.5\], got 0.9"),
        ({"center_lat": 88.0}, r"center_lat must be within"),
        ({"start": "yesterday"}, r"start must be an ISO datetime"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TsunamiConfig(**kwargs)


def test_bad_sources_and_times_are_rejected():
    cfg = TsunamiConfig(nx=4, ny=4, n_frames=2)
    with pytest.raises(VariableError, match=r"src_lat\[1\] = 50.0 is outside the domain"):
        simulate([43.0, 50.0], [165.0, 165.0], cfg)
    with pytest.raises(VariableError, match=r"src_lon\[0\] = 150.0 .* valid range \[15"):
        simulate(43.0, 150.0, cfg)
    with pytest.raises(VariableError, match=r"equal length .* shapes \(2,\) and \(1,\)"):
        simulate([43.0, 44.0], [165.0], cfg)
    with pytest.raises(ConfigError, match=r"output_times must be .* strictly increasing"):
        simulate(43.0, 165.0, cfg, output_times=[0.0, 20.0, 10.0])
    with pytest.raises(ConfigError, match=r"batch_size must be None or an integer >= 1, got 0"):
        simulate(43.0, 165.0, cfg, batch_size=0)
    with pytest.raises(ConfigError, match=r"dtype must be a floating torch.dtype"):
        simulate(43.0, 165.0, cfg, dtype=torch.int64)
    with pytest.raises(ConfigError, match=r"n_runs must be an integer >= 1, got 0"):
        sample_sources(0)


def test_refined_runs_are_the_fine_grid_averaged_onto_the_coarse_one():
    cfg = TsunamiConfig(nx=6, ny=6, n_frames=3)
    src = sample_sources(2, seed=3, config=cfg)
    refined = simulate(**src, config=cfg, refine=2)
    fine = simulate(**src, config=dataclasses.replace(cfg, nx=12, ny=12))
    coarse = simulate(**src, config=cfg)
    for name in ("u", "v", "eta"):  # the same arithmetic, reshaped: identical
        np.testing.assert_array_equal(
            refined[name].values, fine[name].coarsen(lat=2, lon=2).mean().values
        )
    for name in ("lat", "lon", "x", "y", "time"):
        np.testing.assert_array_equal(refined[name].values, coarse[name].values)
    assert refined.attrs["refine"] == 2 and coarse.attrs["refine"] == 1
    assert not np.array_equal(refined.eta.values, coarse.eta.values)
    with pytest.raises(ConfigError, match=r"refine must be an integer >= 1, got 0"):
        simulate(**src, config=cfg, refine=0)
