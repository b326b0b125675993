"""LEVDA against full-state 4DEnVar at equal K as the grid grows (issue 5: ">= 100x faster").

On the tsunami twin, for each grid (48x48, where the shipped surrogate was trained, and
the paper's 150x150): the truth is simulated on that grid and observed by a buoy network
about 100 km apart (``GridStride(n // 10)``) with 10 % noise at every frame.  Both methods
run through the accessor with K = 40 and windows of 5 observation times, and return the
ensemble fields on the same target grid (loaded, so LEVDA's decoding is timed):

- LEVDA with the shipped 48x48 surrogate, whose coordinate-based decoder is queried on the
  finer grid (so its accuracy at 150x150 is that of a 48x48 surrogate);
- 4DEnVar with the simulator on that grid as the model (``TsunamiModel``; N = 6816 at 48x48,
  67,200 at 150x150), localization support 2 grid cells, inflation 1.1.

The target is the grid's cells inside the surrogate's domain (the hull of the 48x48 cell
centres; 146x146 of the 150x150 cells), and buoys outside it are dropped for both methods.
Wall times are medians over ``--repeats`` runs, measured alternately in one process; the
speed-up is their ratio.  Each time is also split into the ``assimilate`` call (the
analysis: window solves and parameters; fields stay lazy) and loading the fields.
Relative RMSE (u, v, eta each over its truth standard deviation) is reported beside it::

    OMP_NUM_THREADS=1 python benchmarks/speed/speedup_grid.py   # docs/results/speedup_grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from xlevda import LEVDA, FourDEnVar, RunOptions, load_pretrained, metrics
from xlevda.methods import Inflation, Localization
from xlevda.systems import observe, tsunami
from xlevda.systems.tsunami_model import TsunamiModel

VARIABLES = ("u", "v", "eta")
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "speedup_grid.json"


def case(n: int, surrogate, seed: int):
    """Truth on an n x n grid, its buoys, and the target cells inside the surrogate's domain."""
    cfg = tsunami.TsunamiConfig(nx=n, ny=n)
    src = tsunami.sample_sources(1, seed=seed, config=cfg)
    truth = tsunami.simulate(**src, config=cfg).isel(run=0)[list(VARIABLES)]
    truth = truth.drop_vars(["run", "src_lat", "src_lon", "src_x", "src_y"])
    grid = surrogate.schema.grid
    inside = {c: (truth[c] >= min(grid[c])) & (truth[c] <= max(grid[c])) for c in ("lat", "lon")}
    truth = truth.isel(lat=inside["lat"].values, lon=inside["lon"].values)
    obs = observe.observe(truth, observe.GridStride(max(n // 10, 1)), noise_ratio=0.1, seed=seed)
    return cfg, truth, obs


def relative_rmse(an: xr.Dataset, truth: xr.Dataset) -> float:
    def stacked(ds):
        return xr.concat([ds[v] / float(truth[v].std()) for v in VARIABLES], dim="variable")

    err = metrics.relative_rmse(stacked(an), stacked(truth), dim=["variable", "lat", "lon"])
    return float(err.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[48, 150])
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    surrogate = load_pretrained("tsunami")
    report = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/speed/speedup_grid.py",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the start, 1 torch thread",
        "members": args.members,
        "grids": {},
    }
    run = RunOptions(members=args.members, seed=args.seed, outside="drop")
    run32 = RunOptions(members=args.members, seed=args.seed, dtype="float32", outside="drop")
    for n in args.grids:
        cfg, truth, obs = case(n, surrogate, args.seed)
        target = truth.drop_vars(list(VARIABLES))
        model = TsunamiModel(cfg, dtype=torch.float32)
        radius_km = 2.0 * cfg.dx / 1e3
        envar = FourDEnVar(
            inflation=Inflation(multiplicative=1.1),
            localization=Localization(radius_km),
            window=5,
        )
        levda = LEVDA(window=5)
        initial = tsunami.sample_sources(args.members, seed=args.seed + 5_000, config=cfg)
        runs = {
            "LEVDA": lambda t=target, o=obs, c=levda: t.levda.assimilate(o, surrogate, c, run=run),
            "4DEnVar": lambda t=target, o=obs, m=model, c=envar, b=initial: t.levda.assimilate(
                o, m, c, run=run32, background=b
            ),
        }
        walls: dict[str, list[float]] = {k: [] for k in runs}
        analysis: dict[str, list[float]] = {k: [] for k in runs}
        errors = {}
        for _ in range(args.repeats):
            for name, fn in runs.items():  # alternate, so that load drifts hit both
                t0 = time.perf_counter()
                lazy = fn()
                t1 = time.perf_counter()
                an = lazy[list(VARIABLES)].load()
                walls[name].append(time.perf_counter() - t0)
                analysis[name].append(t1 - t0)
                errors[name] = relative_rmse(an, truth)
                print(
                    f"{n}x{n} {name:<8} {walls[name][-1]:8.2f} s (assimilate "
                    f"{analysis[name][-1]:.2f} s)  rel. RMSE {errors[name]:.3f}"
                )
        med = {k: float(np.median(v)) for k, v in walls.items()}
        med_analysis = {k: float(np.median(v)) for k, v in analysis.items()}
        report["grids"][f"{n}x{n}"] = {
            "state_size_4denvar": model.latent_dim,
            "target_cells": int(truth.sizes["lat"] * truth.sizes["lon"]),
            "observed_values": int(sum(obs[v].size for v in VARIABLES)),
            "wall_s": walls,
            "median_s": med,
            "speedup_levda_over_4denvar": med["4DEnVar"] / med["LEVDA"],
            "assimilate_s": analysis,
            "median_assimilate_s": med_analysis,
            "speedup_assimilate_only": med_analysis["4DEnVar"] / med_analysis["LEVDA"],
            "relative_rmse": errors,
        }
        print(
            f"{n}x{n}: LEVDA {med['4DEnVar'] / med['LEVDA']:.2f}x faster than 4DEnVar "
            f"({med_analysis['4DEnVar'] / med_analysis['LEVDA']:.2f}x in the assimilate call)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
