"""Size and time of writing the demo's analysis (tsunami, 48x48, K = 100, 51 frames) in each way.

Runs the demo's twin experiment once (seed 0), then writes its lazy analysis -- decoded
chunk by chunk during each write, as ``xlevda demo`` does -- with:

- ``plain``: ``Dataset.to_netcdf`` with every encoding removed (what the demo wrote before
  :func:`xlevda.write` existed: uncompressed, int64 nanoseconds);
- ``write``: :func:`xlevda.write` defaults (zlib 4 + shuffle, chunks as dask's);
- ``write, zlib 1``; ``write, 4 digits``; ``write, 3 digits``; ``write, no latent``;
- ``write .zarr`` (Blosc-zstd 4 + shuffle).

Prints bytes on disk, wall time and CPU time (all threads) of each write::

    PYTHONPATH=. python benchmarks/speed/demo_write.py scratch/
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from xlevda.demo import twin_experiment
from xlevda.write import write


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="scratch folder for the files (emptied of them after)")
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    analysis = twin_experiment("tsunami", seed=0, members=args.members).analysis

    def plain(path: Path) -> None:
        bare = analysis.copy()
        for var in bare.variables.values():
            var.encoding = {}
        bare.to_netcdf(path)

    ways = {
        "plain to_netcdf": ("plain.nc", plain),
        "write": ("w.nc", lambda p: write(analysis, p)),
        "write, zlib 1": ("w1.nc", lambda p: write(analysis, p, compression=1)),
        "write, 4 digits": ("d4.nc", lambda p: write(analysis, p, significant_digits=4)),
        "write, 3 digits": ("d3.nc", lambda p: write(analysis, p, significant_digits=3)),
        "write, no latent": ("nl.nc", lambda p: write(analysis, p, latent=False)),
        "write .zarr": ("w.zarr", lambda p: write(analysis, p)),
    }
    print(f"demo analysis: {dict(analysis.sizes)}")
    for label, (name, how) in ways.items():
        path = folder / name
        wall, cpu = time.perf_counter(), time.process_time()
        how(path)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"{label:>18}: {_size(path) / 1e6:7.1f} MB, wall {wall:5.1f} s, CPU {cpu:5.1f} s")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


if __name__ == "__main__":
    main()
