"""Resolution convergence of the benchmark runs: how far each grid is from a finer one.

``--system tsunami``: runs of the training configuration (48x48 output grid by default)
simulated with ``tsunami.simulate(refine=r)`` for each ``--refine`` factor (the grid ``r``
times finer, its cell means output on the 48x48 grid) and compared with the finest.  The
scheme is second order, so the distance to the converged solution is about
``e_r (1 - (r / r_max)^2)^-1``.

``--system kolmogorov``: runs of the default configuration (same Reynolds numbers, same
seeded initial spectrum) on ``--grids`` points per side, compared with the finest at the
coarse grid's points (the grids share the points ``2 pi k / n``).

Printed: relative RMSE ``||x - x_finest|| / ||x_finest||`` over the runs, frames and grid per
variable (and, for Kolmogorov, of the first and last frame).  A measurement, not a test::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/convergence.py --refine 1 2 3 6 --runs 2
    OMP_NUM_THREADS=1 python benchmarks/accuracy/convergence.py --system kolmogorov
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from xlevda.systems import kolmogorov, tsunami


def relative(a: np.ndarray, b: np.ndarray, axis=None) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).mean(axis=axis) / (b**2).mean(axis=axis))


def tsunami_runs(args) -> dict:
    cfg = tsunami.TsunamiConfig(nx=args.grid, ny=args.grid)
    src = tsunami.sample_sources(args.runs, seed=args.seed, config=cfg)
    return {
        r: tsunami.simulate(**src, config=cfg, refine=r, dtype=torch.float64)
        for r in sorted(args.refine)
    }


def kolmogorov_runs(args) -> dict:
    re = kolmogorov.sample_reynolds(args.runs, seed=args.seed)["Re"]
    out = {}
    for n in sorted(args.grids):
        t0 = time.perf_counter()
        out[n] = kolmogorov.simulate(re, kolmogorov.KolmogorovConfig(nx=n, ny=n))
        print(f"{n}x{n}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["tsunami", "kolmogorov"], default="tsunami")
    parser.add_argument("--refine", type=int, nargs="+", default=[1, 2, 3, 6])
    parser.add_argument("--grids", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--grid", type=int, default=48)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = tsunami_runs(args) if args.system == "tsunami" else kolmogorov_runs(args)
    finest = max(runs)
    ref = runs[finest]
    print(
        f"\n{platform.machine()}, {args.system}, {args.runs} runs ({time.perf_counter() - t0:.0f}"
        f" s), relative RMSE against {finest}:"
    )
    names = ("u", "v", "eta") if args.system == "tsunami" else ("u", "v", "vorticity")
    for key, ds in runs.items():
        if key == finest:
            continue
        if args.system == "kolmogorov":
            step = finest // key
            ref_k = ref.isel(y=slice(None, None, step), x=slice(None, None, step))
            frames = {v: relative(ds[v].values, ref_k[v].values, (0, 2, 3)) for v in names}
            print(
                f"{key}x{key}: "
                + ", ".join(
                    f"{v} {relative(ds[v].values, ref_k[v].values):.4f} (frames "
                    f"{frames[v][0]:.3f} .. {frames[v][-1]:.3f})"
                    for v in names
                )
            )
        else:
            print(
                f"refine {key}: "
                + ", ".join(f"{v} {relative(ds[v].values, ref[v].values):.4f}" for v in names)
            )


if __name__ == "__main__":
    main()
