"""Cost of the Kolmogorov-flow simulator (:mod:`xlevda.systems.kolmogorov`).

For each grid in ``--grids`` (default the CPU default 64x64 and the paper's 150x150), the
paper setting on that grid (100 burn-in steps of 0.04, then 40 frames 5 steps apart: 295
output steps, internal steps from the default CFL rule) is simulated for ``--runs`` runs
with Reynolds numbers drawn from U(500, 1500), all in one batch unless ``--batch-size`` is
given; the wall time of :func:`simulate` divided by the number of runs is reported as the
median of ``--repeats`` timings.  ``--output-steps`` shortens the horizon (burn-in only)
and the time is then also scaled to the paper's 295 output steps: the cost per output step
is constant because the number of internal steps is fixed.  Each run is checked to have
stayed finite.

Torch runs on ``--threads`` threads (default 1).  Prints one JSON line with the command and
the figures.

Run from the repository root:
``OMP_NUM_THREADS=1 python benchmarks/speed/simulate_kolmogorov.py [--repeats 3] [--runs 8 2]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from xlevda.systems.kolmogorov import paper_config, sample_reynolds, simulate


def time_grid(n: int, runs: int, args: argparse.Namespace) -> dict[str, object]:
    """Median seconds per run of the paper setting on an ``n x n`` grid."""
    paper = replace(paper_config(), nx=n, ny=n)
    cfg = paper
    if args.output_steps is not None:
        cfg = replace(paper, burn_in=args.output_steps, n_frames=1)
    reynolds = sample_reynolds(runs, seed=0)["Re"]
    kw = {"dtype": getattr(torch, args.dtype), "device": args.device}
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ds = simulate(reynolds, cfg, batch_size=args.batch_size, **kw)
        times.append(time.perf_counter() - start)
        if not np.isfinite(ds.vorticity.values).all():
            raise RuntimeError(f"non-finite vorticity on the {n}x{n} grid")
    per_run = statistics.median(times) / runs
    output_steps = cfg.burn_in + cfg.frame_stride * (cfg.n_frames - 1)
    paper_steps = paper.burn_in + paper.frame_stride * (paper.n_frames - 1)
    return {
        "grid": f"{n}x{n}",
        "runs": runs,
        "batch_size": args.batch_size or "default",
        "output_steps": output_steps,
        "substeps_per_output_step": cfg.substeps,
        "time_step": cfg.output_step / cfg.substeps,
        "seconds_per_run": per_run,
        "seconds_per_run_paper_horizon": per_run * paper_steps / output_steps,
        "seconds_per_run_all_repeats": [t / runs for t in times],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[64, 150])
    parser.add_argument("--runs", type=int, nargs="+", default=[8, 2], help="runs per grid")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--output-steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if len(args.runs) != len(args.grids):
        parser.error(f"--runs needs one count per grid {args.grids}, got {args.runs}")
    torch.set_num_threads(args.threads)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        "device": args.device,
        "torch": torch.__version__,
        "threads": args.threads,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "grids": [time_grid(n, r, args) for n, r in zip(args.grids, args.runs, strict=True)],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
