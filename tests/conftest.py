"""Shared fixtures: tiny analytic datasets that need no simulator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tests run single-threaded: their tensors are tiny, and on a shared 2-core machine a
    second BLAS thread waiting for a busy core costs milliseconds per float64 matmul (and
    5-60x in training steps, see docs/results.md)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_runs(n_runs: int = 6, n_frames: int = 5, ny: int = 8, nx: int = 9, seed: int = 0):
    """Gaussian bumps drifting east at a speed set by the run's parameters.

    Dims (run, time, lat, lon); variables ``eta`` and ``u``; parameters ``a`` and
    ``b`` as coordinates on ``run``; datetime times one hour apart.
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.5, 0.5, n_runs)
    b = rng.uniform(0.5, 1.5, n_runs)
    lat = np.linspace(40.0, 44.0, ny)
    lon = np.linspace(-160.0, -155.0, nx)
    t = np.arange(n_frames)
    la, lo = np.meshgrid((lat - 42.0) / 2.0, (lon + 157.5) / 2.5, indexing="ij")
    centre = a[:, None] + 0.1 * b[:, None] * t[None, :]
    eta = np.exp(-((lo[None, None] - centre[..., None, None]) ** 2 + la[None, None] ** 2) / 0.2)
    u = b[:, None, None, None] * eta
    time = np.datetime64("2026-01-01T00:00", "ns") + t * np.timedelta64(3600, "s")
    return xr.Dataset(
        {
            "eta": (("run", "time", "lat", "lon"), eta, {"units": "m", "long_name": "bump"}),
            "u": (("run", "time", "lat", "lon"), u, {"units": "m s-1"}),
        },
        coords={
            "run": np.arange(n_runs),
            "time": ("time", time, {"standard_name": "time"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "a": ("run", a, {"long_name": "offset"}),
            "b": ("run", b, {"long_name": "speed"}),
        },
    )


@pytest.fixture
def runs() -> xr.Dataset:
    return make_runs()


def tiny_ldnet() -> xlevda.LDNet:
    """A tiny LDNet (separable decoder, 3 epochs) on :func:`make_runs`, parameters ``a``, ``b``.

    Seeds torch's global generator.
    """
    torch.manual_seed(0)
    cfg = xlevda.LDNetConfig(
        latent_dim=4,
        decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
        train=xlevda.TrainConfig(epochs=3),
    )
    return xlevda.LDNet.fit(make_runs(n_runs=8, n_frames=6), ["a", "b"], cfg, progress=False)


@pytest.fixture(scope="module")
def model():
    """:func:`tiny_ldnet`; module scope, as each test module had its own."""
    return tiny_ldnet()


@pytest.fixture(scope="module")
def truth():
    """Run 0 of the archive :func:`model` was fitted on."""
    return make_runs(n_runs=8, n_frames=6).isel(run=0)
