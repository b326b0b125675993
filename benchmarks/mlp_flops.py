"""Achieved FLOP rate of the MLP-decoder path of a LEVDA window, against a float32 matmul.

One evaluation of the window cost and its gradient (what every L-BFGS iteration does)
for K members of an LDNet with the MLP neural-field decoder (the tsunami CPU setting:
latent 12, width 64, depth 3, 64 Fourier frequencies, tanh; ``--width`` and
``--activation`` vary it) observing ``--points`` points at 5 times.  FLOPs are counted
exactly by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, forward and
backward); the rate is compared with a float32 2048 x 2048 ``torch.matmul`` timed in
the same run.  Medians over ``--repeats``; one torch thread by default::

    python benchmarks/mlp_flops.py --members 100 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import xlevda
from xlevda.core.levda import ObsWindow, WindowObjective
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.schema import Affine, SurrogateSchema


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=64, help="decoder width (paper: 300)")
    parser.add_argument("--activation", default="tanh", choices=["tanh", "silu", "gelu"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    schema = SurrogateSchema(
        ("u", "v", "eta"),
        ({}, {}, {}),
        Affine((0.0,) * 3, (1.0,) * 3),
        ("lat", "lon"),
        ({}, {}),
        Affine((0.0, 0.0), (1.0, 1.0)),
        ("a", "b"),
        ({}, {}),
        Affine((0.0, 0.0), (1.0, 1.0)),
        ((-1.0, 1.0), (-1.0, 1.0)),
        "0",
        1.0,
        "s",
        False,
        51,
    )
    decoder = xlevda.MLPDecoderConfig(width=args.width, depth=3, n_fourier=64, fourier_scale=2.0)
    config = xlevda.LDNetConfig(latent_dim=12, decoder=decoder, activation=args.activation)
    model = LDNetModel(config, schema).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    k, t_o = args.members, 5
    points = 2 * torch.rand(t_o, args.points, 2) - 1
    values = torch.randn(t_o, args.points, 3)
    window = ObsWindow(torch.arange(t_o), torch.zeros(t_o), points, values, torch.ones_like(values))
    z_b = 0.1 * torch.randn(k, 14)
    objective = WindowObjective.build(model, z_b, window)
    members = torch.arange(k)
    beta = objective.start.clone()

    def cost_and_grad() -> None:
        b = beta.clone().requires_grad_(True)
        objective.cost(b, members).sum().backward()

    with FlopCounterMode(display=False) as counter:
        cost_and_grad()
    flops = counter.get_total_flops()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    t_mm = _median_seconds(lambda: torch.matmul(a, b), args.repeats)
    t_obj = _median_seconds(cost_and_grad, args.repeats)
    rate_mm, rate_obj = 2 * 2048**3 / t_mm, flops / t_obj
    print(
        json.dumps(
            {
                "command": "python benchmarks/mlp_flops.py "
                + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
                "machine": f"{platform.machine()}, {args.threads} thread(s), shared 2-core CPU",
                "members": k,
                "decoded_points_per_eval": k * t_o * args.points,
                "flops_per_cost_and_grad": flops,
                "seconds_per_cost_and_grad": round(t_obj, 5),
                "gflops_levda_mlp": round(rate_obj / 1e9, 2),
                "gflops_matmul_2048": round(rate_mm / 1e9, 2),
                "ratio": round(rate_obj / rate_mm, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
