"""Peak memory of ``LDNet.fit`` on a zarr store larger than 2 GB.

Builds ``scratch/big_runs.zarr`` (float64, > 2 GB) by simulating tsunami runs on
the CPU grid in batches and appending them to the store, then trains for one
epoch while streaming the store chunk by chunk; with ``--linear`` it fits the
shipped surrogate's closed-form linear LDNet instead (641 latent dimensions, 28 x 28
cosine terms), which reads the store chunk by chunk too.  Measure with::

    /usr/bin/time -v python benchmarks/memory/fit_memory.py --runs 800
    /usr/bin/time -v python benchmarks/memory/fit_memory.py --runs 800 --linear

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
    parser.add_argument("--linear", action="store_true", help="the closed-form linear LDNet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    store = Path(args.store)
    if not store.exists():
        build(store, args.runs, batch=100)
    ds = xr.open_zarr(store)
    print(f"store: {ds.nbytes / 1e9:.2f} GB in memory terms, chunks {dict(ds.chunks)}")
    train = xlevda.TrainConfig(epochs=1, points_per_frame=None, validation_fraction=0.05)
    if args.linear:
        cfg = xlevda.LDNetConfig(
            latent_dim=641,
            learnable_dt=False,
            dynamics=xlevda.LinearDynamicsConfig(),
            decoder=xlevda.CosineDecoderConfig(n_terms=28),
            train=train,
        )
    else:
        cfg = xlevda.LDNetConfig(latent_dim=8, decoder=xlevda.SeparableDecoderConfig(), train=train)
    t0 = time.perf_counter()
    model = xlevda.LDNet.fit(
        ds, ["src_lat", "src_lon"], cfg, memory_budget=256 * 1024**2, chunk_runs=20
    )
    what = "closed-form linear fit" if args.linear else "one epoch"
    print(f"{what} streamed in {time.perf_counter() - t0:.1f} s", model.metadata.get("linear_fit"))


if __name__ == "__main__":
    main()
