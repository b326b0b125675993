"""What land and gaps in the training archive cost: ``LDNet.fit(..., missing="mask")``.

The tracer-puff archive of ``tracer_quality.py`` (smaller: 32x32 grid, 24 hourly frames,
40 runs) with a land blob (about 15 % of the points, NaN in every run and frame) and
random gaps (a fraction of the other values NaN).  Each fit is the closed-form linear LDNet
without refit, so that the held-out runs stay held out; its error is measured against
the complete held-out runs on the ocean points (relative RMSE over runs, frames and
points), besides the fit report's error over the values present.  With ``--epochs N``
a separable-decoder LDNet trained by gradient descent is measured too.  One torch thread.

Run from the repository root::

    PYTHONPATH=. python benchmarks/accuracy/tracer_gaps.py
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
import xarray as xr

import xlevda
from benchmarks.accuracy.tracer_quality import tracer_archive

PARAMS = ["wind_east", "wind_north", "diffusivity"]


def land_mask(ds: xr.Dataset) -> xr.DataArray:
    """A land blob: points within 0.9 degrees of (31.0, -97.2)."""
    d2 = (ds.lat - 31.0) ** 2 + (ds.lon + 97.2) ** 2
    return d2 < 0.9**2


def ocean_error(model, complete: xr.Dataset, land: xr.DataArray) -> float:
    """Relative RMSE of ``model`` on the complete held-out runs, over the ocean points."""
    runs = complete.isel(run=list(model.quality.heldout_runs))
    pred = model.predict({p: runs[p] for p in PARAMS}).transpose(*runs.tracer.dims)
    ocean = ~land
    err = (pred.tracer - runs.tracer).where(ocean)
    return float(np.sqrt((err**2).sum() / (runs.tracer.where(ocean) ** 2).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0, help="also a gradient fit (epochs)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small linear algebra on a shared 2-core machine (conftest.py)
    complete = tracer_archive(n_runs=40, n_frames=24, n=32)
    land = land_mask(complete)
    train = xlevda.TrainConfig(validation_fraction=0.2)
    configs = {
        "linear": xlevda.LDNetConfig(
            latent_dim=24,
            learnable_dt=False,
            dynamics=xlevda.LinearDynamicsConfig(refit=False),
            decoder=xlevda.CosineDecoderConfig(n_terms=14),
            train=train,
        )
    }
    if args.epochs:
        configs["separable"] = xlevda.LDNetConfig(
            latent_dim=12,
            decoder=xlevda.SeparableDecoderConfig(),
            train=xlevda.TrainConfig(epochs=args.epochs, validation_fraction=0.2),
        )
    rng = np.random.default_rng(0)
    print(f"land: {float(land.mean()):.1%} of {land.size} points")
    print(f"{'fit':<10}{'archive':<22}{'report error':>13}{'ocean error':>13}{'time':>8}")
    for name, config in configs.items():
        for land_on, gaps in [(False, 0.0), (True, 0.0), (True, 0.1), (True, 0.3)]:
            ds = complete.where(~land) if land_on else complete
            if gaps:
                ds = ds.assign(tracer=ds.tracer.where(rng.random(ds.tracer.shape) >= gaps))
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # spectral radius, reported
                model = xlevda.LDNet.fit(ds, PARAMS, config, missing="mask", progress=False)
            seconds = time.perf_counter() - start
            label = ("land" if land_on else "complete") + (f" + {gaps:.0%} gaps" if gaps else "")
            report = model.quality.overall_errors[0]
            print(
                f"{name:<10}{label:<22}{report:>13.4f}"
                f"{ocean_error(model, complete, land):>13.4f}{seconds:>7.1f}s"
            )


if __name__ == "__main__":
    main()
