"""Size, time and precision of writing the demo's analysis (tsunami, 48x48, K = 100, 51 frames).

Runs the demo's twin experiment once (seed 0), then writes its lazy analysis -- decoded
chunk by chunk during each write, as ``xlevda demo`` does -- in each way:

- ``plain``: ``Dataset.to_netcdf`` with every encoding removed (what the demo wrote before
  :func:`xlevda.write` existed: uncompressed, int64 nanoseconds);
- ``write``: :func:`xlevda.write` defaults (lossless: zlib 4 + shuffle, chunks as dask's),
  and with zlib 1 and 9;
- ``N digits``: ``significant_digits=N`` (CF bitround, a relative precision);
- ``spread F``: ``spread_step=F`` (CF packing to steps of F x each field's RMS ensemble
  spread, an absolute precision), also without the latent trajectory and to zarr.

Prints bytes on disk, wall time and CPU time (all threads) of each write and, for the
fields u, v, eta read back: the largest error in units of the RMS ensemble spread
``max|err|/sp``, the relative change of the RMS spread ``d(sp)`` and the largest change
of the pointwise spread ``max|d(spread)|/sp``::

    PYTHONPATH=. python benchmarks/speed/demo_write.py scratch/
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from xlevda.demo import twin_experiment
from xlevda.write import write

FIELDS = ("u", "v", "eta")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _precision(exact: dict[str, np.ndarray], path: Path) -> str:
    """Error and spread change of the fields read back from ``path``, per field."""
    back = xr.open_zarr(path) if path.suffix == ".zarr" else xr.open_dataset(path)
    out = []
    for name in FIELDS:
        x, b = exact[name], back[name].values.astype(np.float64)
        sx, sb = x.std(axis=1, ddof=1), b.std(axis=1, ddof=1)
        rms = np.sqrt(np.mean(sx**2))
        out.append(
            f"{name} {np.abs(b - x).max() / rms:.3f} {np.sqrt(np.mean(sb**2)) / rms - 1:+.0e} "
            f"{np.abs(sb - sx).max() / rms:.3f}"
        )
    back.close()
    return " | ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="scratch folder for the files (emptied of them after)")
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    analysis = twin_experiment("tsunami", seed=0, members=args.members).analysis
    exact = {n: analysis[n].values.astype(np.float64) for n in FIELDS}

    def plain(path: Path) -> None:
        bare = analysis.copy()
        for var in bare.variables.values():
            var.encoding = {}
        bare.to_netcdf(path)

    ways = {
        "plain to_netcdf": ("plain.nc", {}),
        "write": ("w.nc", {}),
        "write, zlib 1": ("w1.nc", {"compression": 1}),
        "write, zlib 9": ("w9.nc", {"compression": 9}),
        "write, no latent": ("nl.nc", {"latent": False}),
        "write .zarr": ("w.zarr", {}),
        "5 digits": ("d5.nc", {"significant_digits": 5}),
        "4 digits": ("d4.nc", {"significant_digits": 4}),
        "3 digits": ("d3.nc", {"significant_digits": 3}),
        "spread 0.025": ("s025.nc", {"spread_step": 0.025}),
        "spread 0.05": ("s05.nc", {"spread_step": 0.05}),
        "spread 0.1": ("s1.nc", {"spread_step": 0.1}),
        "spread 0.25": ("s25.nc", {"spread_step": 0.25}),
        "spread 0.1, zlib 9": ("s1z9.nc", {"spread_step": 0.1, "compression": 9}),
        "spread 0.1, no latent": ("s1nl.nc", {"spread_step": 0.1, "latent": False}),
        "spread 0.1 .zarr": ("s1.zarr", {"spread_step": 0.1}),
    }
    print(f"demo analysis: {dict(analysis.sizes)}")
    print(
        f"{'':>22}  {'size':>8}  {'wall':>7}  {'CPU':>7}  "
        "per field: max|err|/sp d(sp) max|d(spread)|/sp"
    )
    for label, (name, options) in ways.items():
        path = folder / name
        wall, cpu = time.perf_counter(), time.process_time()
        if label.startswith("plain"):
            plain(path)
        else:
            write(analysis, path, **options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"{label:>22}: {_size(path) / 1e6:6.1f} MB, {wall:5.1f} s, {cpu:5.1f} s  "
            f"{_precision(exact, path)}",
            flush=True,
        )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


if __name__ == "__main__":
    main()
