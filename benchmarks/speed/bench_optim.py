"""Batched LEVDA window solve vs a per-member ``torch.optim.LBFGS`` loop (CPU).

A nonlinear tiny-MLP surrogate of CPU-realistic size (d_s = 12, d_u = 2, MLP vector
field and an MLP neural-field decoder of width 64), K = 100 members, one window of
5 observation times x 100 points x 3 channels (1500 values, 10 % noise), float32.

Timed side by side in one run (median of ``--repeats``):

- ``batched L-BFGS``: :func:`xlevda.core.levda.solve_window` with ``LBFGSConfig``;
- ``batched L-BFGS, 1e-4``: the same with ``tol_cost=1e-4``, LEVDA's default
  (the issue's criterion is a final cost within 1 % of the loop's);
- ``batched GN, pointwise`` / ``forward``: the same with ``GaussNewtonConfig`` and its
  ``jacobian="pointwise"`` (pointwise reverse mode, suited to this MLP decoder) or
  ``"forward"`` (forward mode);
- ``loop, paper alpha``: for each member, ``torch.optim.LBFGS`` (strong Wolfe) on
  eq. 19 in the paper's K-dimensional ``alpha``;
- ``loop, reduced`` (``--reduced-loop``): the same loop on the r-dimensional reduced
  coordinates, which separates the gain of batching from the gain of the reduction.

Speed-ups and cost differences are relative to the fastest paper-alpha loop.  The
batched solves use ``--threads`` torch threads, the loop each of ``--loop-threads``
(both default 2).  On a busy 2-core machine a second BLAS thread waiting for a core
can make every small matmul of the loop far slower (seen: 331 s with 2 threads
against 20 s with 1), so pass ``--loop-threads 1 2`` there and compare against the
faster one.  All optimizers run with their default tolerances and ``--max-iter``
iterations at most.

Run from the repository root:
``PYTHONPATH=. python benchmarks/speed/bench_optim.py [--repeats 5] [--members 100]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace

import torch
from torch import Tensor

from benchmarks.common import mlp_ldnet
from xlevda.core.dynamics import observe
from xlevda.core.levda import solve_window
from xlevda.core.objective import WindowObjective
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.core.window import ObsWindow
from xlevda.surrogates.ldnet import LDNetModel


def problem(K: int, seed: int = 1) -> tuple[LDNetModel, Tensor, ObsWindow]:
    """The MLP-decoder LDNet, a background ensemble around a random truth, and one
    window of 5 times (two between latent steps) x 100 points x 3 channels."""
    sur = mlp_ldnet(width=64, depth=3, n_fourier=16, dt0=0.2)
    g = torch.Generator().manual_seed(seed)
    d_z = sur.latent_dim + sur.param_dim
    truth = torch.randn(1, d_z, generator=g)
    z_b = truth + 0.5 * torch.randn(K, d_z, generator=g)
    t_o, n_pts = 5, 100
    points = 2 * torch.rand(t_o, n_pts, 2, generator=g) - 1
    step, frac = torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0.0, 0.3, 0.0, 0.6, 0.0])
    values0, prepared = torch.zeros(t_o, n_pts, 3), sur.prepare_points(points)
    clean = observe(sur, truth, ObsWindow(step, frac, points, values0, values0), prepared)[0]
    std = 0.1 * clean.std()
    values = clean + std * torch.randn(clean.shape, generator=g)
    window = ObsWindow(step, frac, points, values, torch.full_like(values, 1 / std**2))
    return sur, z_b, window


def _torch_lbfgs(fun, x0: Tensor, member: Tensor, max_iter: int) -> Tensor:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = fun(x, member).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return fun(x, member).sum()


def per_member_loop(objective: WindowObjective, reduced: bool, max_iter: int) -> Tensor:
    """``torch.optim.LBFGS`` member by member; returns the final costs (K,)."""
    K = objective.subspace.size
    fun = objective.cost if reduced else objective.cost_full
    start = objective.start if reduced else math.sqrt(K - 1) * torch.eye(K)
    return torch.stack(
        [_torch_lbfgs(fun, start[j : j + 1], torch.tensor([j]), max_iter) for j in range(K)]
    )


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, batched solves")
    parser.add_argument(
        "--loop-threads", type=int, nargs="+", default=[2], help="torch threads, loop (each)"
    )
    parser.add_argument("--reduced-loop", action="store_true", help="also time the reduced loop")
    args = parser.parse_args()
    sur, z_b, window = problem(args.members)
    objective = WindowObjective.build(sur, z_b, window)
    print(
        f"K={args.members}, d_z={z_b.shape[1]}, reduced r={objective.subspace.rank}, "
        f"{window.n_obs} observed values, float32, median of {args.repeats}"
    )
    rows = []
    loops = [("loop, paper alpha", False)] + [("loop, reduced", True)] * args.reduced_loop
    for threads in args.loop_threads:
        torch.set_num_threads(threads)
        for name, reduced in loops:
            t, cost = timed(
                lambda r=reduced: per_member_loop(objective, r, args.max_iter), args.repeats
            )
            rows.append((name, threads, t, cost, "torch.optim.LBFGS, one member at a time"))
    torch.set_num_threads(args.threads)
    gn = GaussNewtonConfig(max_iter=args.max_iter)
    for name, options in (
        ("batched L-BFGS", {"optimizer": LBFGSConfig(max_iter=args.max_iter)}),
        (
            "batched L-BFGS, 1e-4",
            {"optimizer": LBFGSConfig(max_iter=args.max_iter, tol_cost=1e-4)},
        ),
        ("batched GN, pointwise", {"optimizer": replace(gn, jacobian="pointwise")}),
        ("batched GN, forward", {"optimizer": replace(gn, jacobian="forward")}),
    ):
        t, res = timed(lambda o=options: solve_window(sur, z_b, window, **o), args.repeats)
        note = (
            f"iterations mean {res.n_iter.float().mean():.1f} max {int(res.n_iter.max())}, "
            f"{int(res.converged.sum())}/{args.members} converged"
        )
        rows.append((name, args.threads, t, res.cost, note))
    # reference: the fastest paper-alpha loop
    _, _, ref_t, ref_cost, _ = min(
        (r for r in rows if r[0] == "loop, paper alpha"), key=lambda r: r[2]
    )
    head = ("method", "threads", "median s", "speed-up", "mean cost", "max rel dcost")
    print(f"{head[0]:22s} {head[1]:>7s} {head[2]:>9s} {head[3]:>9s} {head[4]:>11s} {head[5]:>14s}")
    for name, threads, t, cost, note in rows:
        rel = ((cost - ref_cost).abs() / ref_cost.abs()).max().item()
        print(
            f"{name:22s} {threads:7d} {t:9.3f} {ref_t / t:9.1f} {cost.mean().item():11.4f} "
            f"{rel:14.2e}  {note}"
        )


if __name__ == "__main__":
    main()
