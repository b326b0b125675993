"""Achieved FLOP rate of the MLP-decoder path of a LEVDA window, against a float32 matmul.

One evaluation of the window cost and its gradient (what every L-BFGS iteration does)
for K members of an LDNet with the MLP neural-field decoder, observing ``--points``
points at 5 times.  The default is the CPU setting (latent 12, width 64, depth 3, 64
Fourier frequencies, tanh); ``--width 300 --depth 10`` is the paper's tsunami decoder.

Two paths compute the same cost and gradient: autograd through the layers
(``MLPDecoder.fused = False``) and the fused tanh path that assimilation uses
(:mod:`xlevda.surrogates.fused`).  The FLOPs are those of the network's matrix
products, forward and backward, counted by ``torch.utils.flop_counter.FlopCounterMode``
on the autograd path; each path's rate is that count over its time.  A float32
2048 x 2048 ``torch.matmul`` and both paths are timed side by side, in turn within each
repeat; medians over ``--repeats``; one torch thread by default.  Run from the
repository root::

    PYTHONPATH=. python benchmarks/speed/mlp_flops.py --repeats 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import mlp_ldnet
from xlevda.core.objective import WindowObjective
from xlevda.core.window import ObsWindow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=64, help="decoder width (paper: 300)")
    parser.add_argument("--depth", type=int, default=3, help="decoder depth (paper: 10)")
    parser.add_argument("--activation", default="tanh", choices=["tanh", "silu", "gelu"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mlp_ldnet(args.width, args.depth, args.activation)
    k, t_o = args.members, 5
    points = 2 * torch.rand(t_o, args.points, 2) - 1
    values = torch.randn(t_o, args.points, 3)
    window = ObsWindow(torch.arange(t_o), torch.zeros(t_o), points, values, torch.ones_like(values))
    objective = WindowObjective.build(model, 0.1 * torch.randn(k, 14), window)
    members = torch.arange(k)

    def cost_and_grad(fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model.decoder.fused = fused
        beta = objective.start.clone().requires_grad_(True)
        cost = objective.cost(beta, members)
        return cost.detach(), torch.autograd.grad(cost.sum(), beta)[0]

    with FlopCounterMode(display=False) as counter:
        cost_ref, grad_ref = cost_and_grad(False)
    flops = counter.get_total_flops()
    cost_fused, grad_fused = cost_and_grad(True)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    runs = {
        "matmul_2048": lambda: torch.matmul(a, b),
        "autograd": lambda: cost_and_grad(False),
        "fused": lambda: cost_and_grad(True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    sec = {name: statistics.median(ts) for name, ts in times.items()}
    rate_mm = 2 * 2048**3 / sec["matmul_2048"]
    report = {
        "command": "PYTHONPATH=. python benchmarks/speed/mlp_flops.py "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": f"{platform.machine()}, {args.threads} thread(s), shared 2-core CPU",
        "decoded_points_per_eval": k * t_o * args.points,
        "flops_per_cost_and_grad": flops,
        "gflops_matmul_2048": round(rate_mm / 1e9, 2),
    }
    for name in ("autograd", "fused"):
        report[f"seconds_{name}"] = round(sec[name], 5)
        report[f"gflops_{name}"] = round(flops / sec[name] / 1e9, 2)
        report[f"ratio_{name}"] = round(flops / sec[name] / rate_mm, 3)
    report["fused_speedup"] = round(sec["autograd"] / sec["fused"], 2)
    report["fused_max_rel_diff_cost"] = float(((cost_fused - cost_ref) / cost_ref).abs().max())
    report["fused_rel_diff_grad"] = float((grad_fused - grad_ref).norm() / grad_ref.norm())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
