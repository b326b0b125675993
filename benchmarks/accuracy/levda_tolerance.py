"""LEVDA on the demo twin: stopping tolerance and members' start against time and accuracy.

For each hidden source (``--seeds``), each relative cost tolerance
(``--tol-cost``; ``0`` is the solver's own default of ``10 eps``; L-BFGS, or
Gauss-Newton with ``--optimizer gauss-newton`` and its ``--jacobian``) and each
start of the randomized members (``--start``: ``background`` or ``enkf``), runs the
demo's full-trajectory assimilation (tsunami, 10x10 buoys observing u, v, eta at
all 51 frames, 10 % noise, K = 100, tau = 5, the shipped surrogate) and prints:
the median assimilation time over ``--repeats`` runs, the scores averaged over the
output times from the second window on (relative RMSE of the mean, spread-error
ratio, CRPS of eta, parameter error as a fraction of the prior range, and that
error at the last frame and over the first window), and the
iterations (sum over windows of the slowest member's, and of the median
member's).  The settings run side by side, one case at a time.

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/accuracy/levda_tolerance.py --seeds 0 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

import xlevda
from xlevda.demo import twin_experiment
from xlevda.methods import GaussNewtonConfig, LBFGSConfig, RandomizedMaximumLikelihood

SCORES = ("rrmse", "ser", "crps", "param_err")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tol-cost", type=float, nargs="+", default=[0.0, 1e-5, 1e-4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--surrogate", default=None, help="a saved tsunami surrogate (default: the shipped one)"
    )
    parser.add_argument(
        "--optimizer", choices=["lbfgs", "gauss-newton"], default="lbfgs", help="window solver"
    )
    parser.add_argument(
        "--jacobian", choices=["forward", "pointwise"], default="forward", help="for Gauss-Newton"
    )
    parser.add_argument(
        "--start",
        choices=["background", "enkf"],
        nargs="+",
        default=["background"],
        help="where the randomized members' optimizations start",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    surrogate = xlevda.load_surrogate(args.surrogate) if args.surrogate else None
    settings = [(tol, start) for tol in args.tol_cost for start in args.start]
    rows: dict[tuple[float, str], list[list[float]]] = {key: [] for key in settings}
    for seed in args.seeds:
        for tol, start in settings:
            if args.optimizer == "lbfgs":
                optimizer = LBFGSConfig(tol_cost=tol or None)
            else:
                optimizer = GaussNewtonConfig(tol_cost=tol or None, jacobian=args.jacobian)
            seconds = []
            for _ in range(args.repeats):
                twin = twin_experiment(
                    "tsunami",
                    seed=seed,
                    optimizer=optimizer,
                    surrogate=surrogate,
                    member_mode=RandomizedMaximumLikelihood(start=start),
                )
                seconds.append(twin.seconds)
            late = twin.scores.isel(time=slice(5, None)).mean("time")
            iters = twin.analysis.window_n_iter.values
            row = [
                statistics.median(seconds),
                *(float(late[k]) for k in SCORES),
                float(iters.max(1).sum()),
                float(np.median(iters, 1).sum()),
                float(twin.scores.param_err.isel(time=-1)),
                float(twin.scores.param_err.isel(time=slice(0, 5)).mean()),
            ]
            rows[tol, start].append(row)
            print(
                f"seed {seed} tol_cost {tol or 'default':>8} start {start:>10}: {row[0]:6.2f} s"
                f"  rel. RMSE {row[1]:.3f}  spread/error {row[2]:.2f}  CRPS {row[3]:.4f}  "
                f"parameter error {row[4]:.3f} (end {row[7]:.3f}, first window {row[8]:.3f})"
                f"  iterations max {row[5]:.0f} median {row[6]:.0f}",
                flush=True,
            )
    print(
        "\n| tol_cost | start | time (s) per case | rel. RMSE | spread/error | CRPS eta | "
        "parameter error (at the end) | first window | iterations (slowest / median member) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (tol, start), r in rows.items():
        a = np.array(r)
        times = " / ".join(f"{t:.1f}" for t in a[:, 0])
        print(
            f"| {tol or 'default (10 eps)'} | {start} | {times} | {a[:, 1].mean():.3f} | "
            f"{a[:, 2].mean():.2f} | {a[:, 3].mean():.4f} | {100 * a[:, 4].mean():.1f} % "
            f"({' / '.join(f'{100 * e:.1f}' for e in a[:, 7])} %) | "
            f"{100 * a[:, 8].mean():.1f} % | {a[:, 5].mean():.0f} / {a[:, 6].mean():.0f} |"
        )


if __name__ == "__main__":
    main()
