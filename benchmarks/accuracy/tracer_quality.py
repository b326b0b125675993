"""The quality report of ``LDNet.fit`` on a user-style archive the package did not make.

A tracer puff released at one point, advected by a uniform wind and diffused (the
closed-form Gaussian solution) on a 40x40 regional latitude-longitude grid, 40
hourly frames; the runs differ in three parameters: the wind's east and north
components and the diffusivity.  The script fits the closed-form linear LDNet and a
short gradient-trained one (separable decoder) and prints each fit's quality report
(``model.quality.summary()``); with ``--archive`` it also writes the archive, for
``xlevda train ARCHIVE --params wind_east wind_north diffusivity -o tracer.pt``.

Run::

    python benchmarks/accuracy/tracer_quality.py --epochs 30 --archive /tmp/tracer.nc
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import xarray as xr

import xlevda


def tracer_archive(n_runs: int = 51, n_frames: int = 40, n: int = 40, seed: int = 0):
    """Runs of a Gaussian puff, ``c = s0^2 / s^2 exp(-|x - x0 - w t|^2 / (2 s^2))`` with
    ``s^2 = s0^2 + 2 K t`` (degrees, hours): dims ``(run, time, lat, lon)``."""
    rng = np.random.default_rng(seed)
    east = rng.uniform(0.02, 0.08, n_runs)  # degrees per hour
    north = rng.uniform(-0.03, 0.03, n_runs)
    diff = rng.uniform(0.002, 0.01, n_runs)  # degrees^2 per hour
    lat = np.linspace(30.05, 33.95, n)
    lon = np.linspace(-99.95, -96.05, n)
    t = np.arange(n_frames, dtype=float)
    s0sq = 0.2**2
    ssq = s0sq + 2 * diff[:, None] * t  # (run, time)
    clat = 32.0 + north[:, None] * t
    clon = -99.3 + east[:, None] * t
    r2 = (lat[None, None, :, None] - clat[..., None, None]) ** 2 + (
        lon[None, None, None, :] - clon[..., None, None]
    ) ** 2
    conc = s0sq / ssq[..., None, None] * np.exp(-r2 / (2 * ssq[..., None, None]))
    times = np.datetime64("2026-06-01T00:00", "ns") + np.arange(n_frames) * np.timedelta64(1, "h")
    return xr.Dataset(
        {"tracer": (("run", "time", "lat", "lon"), conc, {"units": "1", "long_name": "tracer"})},
        coords={
            "time": ("time", times, {"standard_name": "time"}),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "wind_east": ("run", east),
            "wind_north": ("run", north),
            "diffusivity": ("run", diff),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="gradient fit epochs")
    parser.add_argument("--archive", help="also write the archive here (.nc)")
    args = parser.parse_args()
    ds = tracer_archive()
    if args.archive:
        ds.to_netcdf(args.archive)
    params = ["wind_east", "wind_north", "diffusivity"]
    train = xlevda.TrainConfig(epochs=args.epochs, validation_fraction=0.1)
    configs = {
        "linear (closed form, README configuration sized to the archive)": xlevda.LDNetConfig(
            latent_dim=40,
            learnable_dt=False,
            dynamics=xlevda.LinearDynamicsConfig(),
            decoder=xlevda.CosineDecoderConfig(n_terms=20),
            train=train,
        ),
        f"separable decoder, {args.epochs} epochs": xlevda.LDNetConfig(
            latent_dim=12, decoder=xlevda.SeparableDecoderConfig(), train=train
        ),
    }
    for name, config in configs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = xlevda.LDNet.fit(ds, params, config, progress=False)
        print(f"\n== {name}: LDNet.fit {time.perf_counter() - t0:.1f} s")
        print(model.quality.summary())
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"UserWarning: {w.message}")


if __name__ == "__main__":
    main()
