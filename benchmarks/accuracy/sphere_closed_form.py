"""The default (closed-form polynomial) LDNet on the sphere system, against the shipped surrogate.

Simulates ``--runs`` training runs (32x64, 32 frames, forcing ``h_f0`` and ``sigma`` drawn
with ``--seed``) and ``--truths`` fresh truths (seed ``--seed + 1``), cached as NetCDF under
``--cache``; fits ``LDNetConfig()`` (optionally with ``--quadratic-modes`` and
``--mode-tolerance``) and measures each surrogate's relative RMSE per variable on the fresh
truths, over all frames and grid points (``|forecast - truth| / |truth|`` per run, mean over
runs), next to the shipped ``load_pretrained("sphere")``'s on the same truths.

Run::

    python benchmarks/accuracy/sphere_closed_form.py --runs 100 --truths 10
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import xlevda
from xlevda.systems import sphere, sphere_config


def runs(n: int, seed: int, cache: Path) -> xr.Dataset:
    path = cache / f"sphere_{n}_{seed}.nc"
    if not path.exists():
        cfg = sphere_config.SphereConfig(nlat=32, n_frames=32)
        t0 = time.perf_counter()
        ds = sphere.simulate(**sphere.sample_forcing(n, seed=seed, config=cfg), config=cfg)
        ds.to_netcdf(path)
        print(f"simulated {n} sphere runs in {time.perf_counter() - t0:.0f} s -> {path}")
    return xr.open_dataset(path).load()


def errors(model, truths: xr.Dataset) -> dict[str, float]:
    """Mean over the truths of each variable's relative RMSE over frames and points."""
    fc = model.predict({p: truths[p] for p in model.schema.params})
    out = {}
    for name in model.schema.variables:
        diff = (fc[name] - truths[name]).values.reshape(truths.sizes["run"], -1)
        ref = truths[name].values.reshape(truths.sizes["run"], -1)
        out[name] = float(np.mean(np.linalg.norm(diff, axis=1) / np.linalg.norm(ref, axis=1)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--truths", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quadratic-modes", type=int, default=0)
    parser.add_argument("--mode-tolerance", type=float, default=None)
    parser.add_argument("--cache", default="/tmp/training_cache")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    train, truths = runs(args.runs, args.seed, cache), runs(args.truths, args.seed + 1, cache)
    dyn = {"quadratic_modes": args.quadratic_modes}
    if args.mode_tolerance is not None:
        dyn["mode_tolerance"] = args.mode_tolerance
    config = xlevda.LDNetConfig(dynamics=xlevda.PolynomialDynamicsConfig(**dyn))
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        model = xlevda.LDNet.fit(train, ["h_f0", "sigma"], config, progress=False)
    seconds = time.perf_counter() - t0
    print(f"closed-form polynomial LDNet: fit {seconds:.1f} s")
    print(model.quality.summary())
    for w in caught:
        print(f"UserWarning: {w.message}")
    print("fresh truths, relative RMSE per variable:")
    print("  closed form:", {k: round(v, 4) for k, v in errors(model, truths).items()})
    shipped = xlevda.load_pretrained("sphere")
    print("  shipped    :", {k: round(v, 4) for k, v in errors(shipped, truths).items()})


if __name__ == "__main__":
    main()
