"""Resolution convergence of the tsunami runs: how far each grid is from a finer one.

Runs of the training configuration (48x48 output grid by default) simulated with
``tsunami.simulate(refine=r)`` for each ``--refine`` factor (the grid ``r`` times finer,
its cell means output on the 48x48 grid) and compared with the finest: relative RMSE
``||x_r - x_finest|| / ||x_finest||`` over the runs, frames and grid, per variable.  The
scheme is second order, so the distance to the converged solution is about
``e_r (1 - (r / r_max)^2)^-1``.  A measurement, not a test::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/convergence.py --refine 1 2 3 6 --runs 2
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from xlevda.systems import tsunami


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refine", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--grid", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cfg = tsunami.TsunamiConfig(nx=args.grid, ny=args.grid)
    src = tsunami.sample_sources(args.runs, seed=args.seed, config=cfg)
    runs = {}
    for r in sorted(args.refine):
        t0 = time.perf_counter()
        runs[r] = tsunami.simulate(**src, config=cfg, refine=r, dtype=torch.float64)
        print(f"refine {r}: {time.perf_counter() - t0:.1f} s", flush=True)
    finest = max(runs)
    ref = runs[finest]
    print(f"\n{platform.machine()}, {args.runs} runs, relative RMSE against refine {finest}:")
    for r, ds in runs.items():
        if r == finest:
            continue
        err = {
            v: float(np.sqrt(((ds[v] - ref[v]) ** 2).mean() / (ref[v] ** 2).mean()))
            for v in ("u", "v", "eta")
        }
        print(f"refine {r}: " + ", ".join(f"{v} {e:.4f}" for v, e in err.items()))


if __name__ == "__main__":
    main()
