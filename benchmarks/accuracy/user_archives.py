"""The default ``LDNet.fit`` on user-style archives the package did not make, against the old one.

Archives (each built here, with its parameters as coordinates on ``run``):

- ``tracer``: the puff of :func:`tracer_quality.tracer_archive` (advected by a parametric
  wind and diffused; closed form; 40x40 regular latitude-longitude grid, 40 hourly frames,
  51 runs, 3 parameters);
- ``bloom``: a plankton bloom on a coastal sea (:func:`bloom_archive`): nonlinear
  reaction-diffusion of plankton ``p`` feeding on nutrient ``n``, ``p_t = D lap p + r n p
  - m p``, ``n_t = -r n p``, solved by finite differences with no flux through the coast
  on a rotated (curvilinear: 2-D ``lat``/``lon``) 36x48 grid whose land cells are NaN
  (``missing="mask"``), 30 frames, 60 runs, 3 parameters (diffusivity, growth rate, the
  release's position along the coast); two variables;
- ``stations``: the tracer puff at 600 scattered stations (unstructured points, one
  ``station`` dimension with ``lat``/``lon`` coordinates), 51 runs.

Methods: ``default`` (``LDNetConfig()``: since this session the closed-form polynomial
LDNet, sizes chosen from the archive) and ``mlp`` (the previous default, ``LDNetConfig(
decoder=MLPDecoderConfig())``, gradient-trained for ``--epochs`` epochs, capped from its
200).  Both through ``xlevda.LDNet.fit`` with its validation split (10% of runs held
out); the error is the fit's quality report: held-out runs, whole trajectories, relative
RMSE per variable (mean over frames, and over all frames).  One JSON line per fit is
appended to ``--out``.

Run::

    python benchmarks/accuracy/user_archives.py --archives tracer bloom stations \\
        --methods default mlp --epochs 15
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import xarray as xr
from tracer_quality import tracer_archive

import xlevda

PARAMS = {
    "tracer": ["wind_east", "wind_north", "diffusivity"],
    "bloom": ["diffusivity", "growth", "release"],
    "stations": ["wind_east", "wind_north", "diffusivity"],
}


def _coast(ny: int, nx: int) -> np.ndarray:
    """Land (True) east of a wavy coastline."""
    j = np.arange(nx)[None, :]
    i = np.arange(ny)[:, None]
    return j > nx - 10 + 3 * np.sin(i / 5.0)


def bloom_archive(n_runs: int = 60, n_frames: int = 30, ny: int = 36, nx: int = 48, seed: int = 1):
    """Runs of the plankton bloom (module docstring): dims ``(run, time, y, x)`` with 2-D
    ``lat``/``lon`` coordinates of a grid rotated by 20 degrees; land cells NaN."""
    rng = np.random.default_rng(seed)
    diff = rng.uniform(0.2, 0.8, n_runs)  # cells^2 per hour
    growth = rng.uniform(0.3, 0.9, n_runs)  # per hour
    release = rng.uniform(8.0, 28.0, n_runs)  # row of the release
    land = _coast(ny, nx)
    sea = (~land).astype(float)
    i, j = np.mgrid[0:ny, 0:nx].astype(float)
    p = 0.8 * np.exp(-((i[None] - release[:, None, None]) ** 2 + (j[None] - 14.0) ** 2) / 8.0)
    p, n = p * sea, np.ones((n_runs, ny, nx)) * sea
    dt, substeps, mortality = 0.25, 4, 0.1

    def laplacian(f):
        out = np.zeros_like(f)
        for axis, shift in ((1, 1), (1, -1), (2, 1), (2, -1)):
            nb, nb_sea = np.roll(f, shift, axis), np.roll(sea, shift, axis - 1)
            edge = np.ones_like(sea)  # no flux through the grid's edges either
            index = [slice(None)] * 2
            index[axis - 1] = 0 if shift == 1 else -1
            edge[tuple(index)] = 0.0
            out += (nb - f) * (nb_sea * edge)[None]
        return out * sea

    frames_p, frames_n = [], []
    for _ in range(n_frames):
        frames_p.append(p.copy())
        frames_n.append(n.copy())
        for _ in range(substeps):
            uptake = growth[:, None, None] * n * p
            p = p + dt * (diff[:, None, None] * laplacian(p) + uptake - mortality * p)
            n = n - dt * uptake
    fp, fn = np.stack(frames_p, 1), np.stack(frames_n, 1)
    fp[:, :, land], fn[:, :, land] = np.nan, np.nan
    theta = np.deg2rad(20.0)
    lat = 40.0 + 0.05 * (i * np.cos(theta) + j * np.sin(theta))
    lon = -70.0 + 0.065 * (-i * np.sin(theta) + j * np.cos(theta))
    times = np.datetime64("2026-05-01T00:00", "ns") + np.arange(n_frames) * np.timedelta64(1, "h")
    dims = ("run", "time", "y", "x")
    return xr.Dataset(
        {
            "plankton": (dims, fp, {"units": "mmol m-3", "long_name": "plankton"}),
            "nutrient": (dims, fn, {"units": "mmol m-3", "long_name": "nutrient"}),
        },
        coords={
            "time": ("time", times, {"standard_name": "time"}),
            "lat": (("y", "x"), lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "diffusivity": ("run", diff),
            "growth": ("run", growth),
            "release": ("run", release),
        },
    )


def stations_archive(n_stations: int = 600, seed: int = 2) -> xr.Dataset:
    """The tracer puff at ``n_stations`` scattered stations: dims ``(run, time, station)``."""
    grid = tracer_archive()
    rng = np.random.default_rng(seed)
    lat = rng.uniform(float(grid.lat.min()), float(grid.lat.max()), n_stations)
    lon = rng.uniform(float(grid.lon.min()), float(grid.lon.max()), n_stations)
    where = {
        "lat": xr.DataArray(lat, dims="station"),
        "lon": xr.DataArray(lon, dims="station"),
    }
    ds = grid.interp(where, method="linear")
    ds["lat"].attrs.update(grid.lat.attrs)
    ds["lon"].attrs.update(grid.lon.attrs)
    return ds


def archive(name: str) -> tuple[xr.Dataset, str]:
    """The archive and the ``missing`` argument of its fit."""
    if name == "tracer":
        return tracer_archive(), "error"
    if name == "bloom":
        return bloom_archive(), "mask"
    return stations_archive(), "error"


def config(method: str, epochs: int) -> xlevda.LDNetConfig:
    if method == "default":
        return xlevda.LDNetConfig()
    train = xlevda.TrainConfig(epochs=epochs)
    return xlevda.LDNetConfig(decoder=xlevda.MLPDecoderConfig(), train=train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", nargs="+", choices=sorted(PARAMS), default=sorted(PARAMS))
    parser.add_argument("--methods", nargs="+", choices=["default", "mlp"], default=["default"])
    parser.add_argument("--epochs", type=int, default=15, help="epochs of the mlp method")
    parser.add_argument("--out", default="/tmp/user_archives.jsonl")
    args = parser.parse_args()
    for name in args.archives:
        ds, missing = archive(name)
        for method in args.methods:
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                model = xlevda.LDNet.fit(
                    ds, PARAMS[name], config(method, args.epochs), missing=missing, progress=False
                )
            seconds = time.perf_counter() - t0
            q = model.quality
            print(f"\n== {name} / {method}: LDNet.fit {seconds:.1f} s")
            print(q.summary())
            for w in caught:
                print(f"UserWarning: {w.message}")
            record = {
                "archive": name,
                "method": method,
                "epochs": args.epochs if method == "mlp" else None,
                "fit_seconds": round(seconds, 1),
                "mean_errors": dict(zip(q.variables, q.mean_errors, strict=True)),
                "overall_errors": dict(zip(q.variables, q.overall_errors, strict=True)),
                "latent_dim": model.config.latent_dim,
                "n_terms": getattr(model.config.decoder, "n_terms", None),
                "note": q.note,
            }
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
