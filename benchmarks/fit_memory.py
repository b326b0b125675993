"""Peak memory of ``LDNet.fit`` on a zarr store larger than 2 GB.

Builds ``scratch/big_runs.zarr`` (float64, > 2 GB) by simulating tsunami runs on
the CPU grid in batches and appending them to the store, then trains for one
epoch while streaming the store chunk by chunk.  Measure with::

    /usr/bin/time -v python benchmarks/fit_memory.py --runs 800

and read "Maximum resident set size".
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import xarray as xr

import xlevda
from xlevda.systems import tsunami


def build(path: Path, runs: int, batch: int) -> None:
    cfg = tsunami.TsunamiConfig()
    for start in range(0, runs, batch):
        src = tsunami.sample_sources(batch, seed=start, config=cfg)
        ds = tsunami.simulate(**src, config=cfg).assign_coords(run=range(start, start + batch))
        ds = ds.chunk({"run": 20})
        if start == 0:
            ds.to_zarr(path, mode="w")
        else:
            ds.to_zarr(path, append_dim="run")
        print(f"  {start + batch}/{runs} runs written", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=800)
    parser.add_argument("--store", default="scratch/big_runs.zarr")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = Path(args.store)
    if not store.exists():
        build(store, args.runs, batch=100)
    ds = xr.open_zarr(store)
    print(f"store: {ds.nbytes / 1e9:.2f} GB in memory terms, chunks {dict(ds.chunks)}")
    cfg = xlevda.LDNetConfig(
        latent_dim=8,
        decoder=xlevda.SeparableDecoderConfig(),
        train=xlevda.TrainConfig(epochs=1, points_per_frame=None, validation_fraction=0.05),
    )
    t0 = time.perf_counter()
    xlevda.LDNet.fit(ds, ["src_lat", "src_lon"], cfg, memory_budget=256 * 1024**2, chunk_runs=20)
    print(f"one epoch streamed in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
