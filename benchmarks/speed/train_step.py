"""Time one training step of the tsunami surrogate's size, by phase.

Usage (the runs file comes from ``examples/train_tsunami_surrogate.py --data``)::

    python benchmarks/speed/train_step.py scratch/tsunami48.nc 1   # torch threads
    python benchmarks/speed/train_step.py scratch/tsunami48.nc 2

Prints the median over 5 steps of the rollout, basis, decode and backward times.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import xarray as xr

import xlevda
from xlevda._convert import build_schema
from xlevda._frames import DatasetFrameSource
from xlevda.surrogates.ldnet import LDNetModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="runs file of examples/train_tsunami_surrogate.py --data")
    parser.add_argument("threads", type=int, help="torch threads")
    args = parser.parse_args()
    threads = args.threads
    torch.set_num_threads(threads)
    ds = xr.open_dataset(args.path).isel(run=slice(0, 16)).load().astype("float32")
    schema = build_schema(ds, ["src_lat", "src_lon"])
    decoder = xlevda.SeparableDecoderConfig(
        n_basis=256, basis_width=128, basis_depth=4, coef_width=128, coef_depth=3, n_fourier=64
    )
    model = LDNetModel(
        xlevda.LDNetConfig(
            latent_dim=12, dynamics_width=64, dynamics_depth=4, decoder=decoder, dt0=0.1
        ),
        schema,
    )
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batch = next(
        DatasetFrameSource(ds, schema, np.arange(16)).batches(
            8, None, torch.Generator().manual_seed(0), True
        )
    )
    times: dict[str, list[float]] = {"rollout": [], "basis": [], "decode": [], "backward": []}
    for _ in range(6):
        t0 = time.perf_counter()
        s = model.rollout(batch.params, schema.n_frames)
        t1 = time.perf_counter()
        basis = model.decoder.basis_points(batch.points)
        t2 = time.perf_counter()
        out = model.decoder.decode_basis(s, basis)
        t3 = time.perf_counter()
        ((out - batch.values) ** 2).mean().backward()
        t4 = time.perf_counter()
        opt.step()
        opt.zero_grad()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(dt)
    medians = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(
        f"threads={threads} "
        + " ".join(f"{k}={v:.3f}s" for k, v in medians.items())
        + f" total={sum(medians.values()):.3f}s"
    )


if __name__ == "__main__":
    main()
