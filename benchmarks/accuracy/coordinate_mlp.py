"""How well can a network map (position, source, time) to the tsunami fields?

A diagnostic for the shipped surrogate's accuracy: a plain coordinate MLP
``f(inputs) -> (u, v, eta)`` (4 hidden layers, SiLU, Adam with a cosine learning
rate over a fixed wall-clock budget, 8192 random (run, frame, point) samples per
step) trained on the same 120 training runs as the shipped surrogate (runs 0-119
of the cached 200-run, 48x48 data set) and scored on its 40 test runs (160-199)
with ``||pred - truth|| / ||truth||`` per variable and for all variables stacked
after per-variable standardization.

``--inputs`` chooses what the network sees (coordinates normalized to [-1, 1]):

- ``raw``: ``(x, y, a, b, t)``, the point, the source and the time;
- ``fourier``: Fourier features of the point (64 random frequencies, scale 3) and
  ``(a, b, t)``, like the LDNet decoder without the raw point;
- ``raw+fourier``: both.

Run from the repository root (the data file is written by
``examples/train_tsunami_surrogate.py --data scratch/tsunami48.nc``)::

    OMP_NUM_THREADS=1 python benchmarks/accuracy/coordinate_mlp.py scratch/tsunami48.nc --inputs raw
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import xarray as xr

VARIABLES = ("u", "v", "eta")


def _unit(values: np.ndarray, ref: np.ndarray) -> torch.Tensor:
    """Map coordinates onto [-1, 1] by the range of ``ref``."""
    mid, half = (ref.max() + ref.min()) / 2, (ref.max() - ref.min()) / 2
    return torch.as_tensor((values - mid) / half, dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the cached 200-run tsunami data set (.nc)")
    parser.add_argument("--inputs", choices=["raw", "fourier", "raw+fourier"], default="raw")
    parser.add_argument("--minutes", type=float, default=7.0, help="training wall-clock budget")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    ds = xr.open_dataset(args.data).load()
    fields = np.stack([ds[v].values for v in VARIABLES], -1).astype(np.float32)
    fields /= fields[:120].reshape(-1, len(VARIABLES)).std(0)
    values = torch.from_numpy(fields)  # (run, time, y, x, C), standardized
    n_frames, ny, nx = values.shape[1:4]
    x, y = _unit(ds.x.values, ds.x.values), _unit(ds.y.values, ds.y.values)
    a, b = _unit(ds.src_x.values, ds.x.values), _unit(ds.src_y.values, ds.y.values)
    t = torch.linspace(-1, 1, n_frames)
    freqs = 3.0 * torch.randn(2, 64)

    def inputs(run, frame, iy, ix):
        cols = [t[frame], a[run], b[run]]
        if args.inputs != "fourier":
            cols += [x[ix], y[iy]]
        out = torch.stack(cols, -1)
        if args.inputs != "raw":
            phase = 2 * math.pi * torch.stack([x[ix], y[iy]], -1) @ freqs
            out = torch.cat([out, phase.sin(), phase.cos()], -1)
        return out

    zero = torch.zeros(1, dtype=torch.long)
    n_in = inputs(zero, zero, zero, zero).shape[-1]
    layers: list[torch.nn.Module] = []
    for i in range(4):
        layers += [torch.nn.Linear(n_in if i == 0 else args.width, args.width), torch.nn.SiLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(args.width, len(VARIABLES)))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)

    start, steps, budget = time.perf_counter(), 0, 60 * args.minutes
    while (elapsed := time.perf_counter() - start) < budget:
        for group in optimizer.param_groups:
            group["lr"] = 1e-5 + 1e-3 * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        idx = [torch.randint(0, hi, (8192,)) for hi in (120, n_frames, ny, nx)]
        loss = (net(inputs(*idx)) - values[tuple(idx)]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1

    def score(runs: range) -> tuple[list[float], float]:
        num, den = torch.zeros(len(VARIABLES)), torch.zeros(len(VARIABLES))
        grid = torch.meshgrid(
            torch.arange(n_frames), torch.arange(ny), torch.arange(nx), indexing="ij"
        )
        with torch.no_grad():
            for r in runs:
                frame, iy, ix = (g.flatten() for g in grid)
                pred = net(inputs(torch.full_like(frame, r), frame, iy, ix))
                truth = values[r].reshape(-1, len(VARIABLES))
                num += (pred - truth).square().sum(0)
                den += truth.square().sum(0)
        return (num / den).sqrt().tolist(), float((num.sum() / den.sum()).sqrt())

    for name, runs in (
        ("training runs (every 6th)", range(0, 120, 6)),
        ("test runs", range(160, 200)),
    ):
        per_var, stacked = score(runs)
        detail = ", ".join(f"{v} {e:.3f}" for v, e in zip(VARIABLES, per_var, strict=True))
        print(
            f"{args.inputs}: {steps} steps in {args.minutes} min; {name}: {detail}; "
            f"all {stacked:.3f}"
        )


if __name__ == "__main__":
    main()
