"""Peak memory of writing a K = 100 analysis of the 150x150 grid over 51 frames to NetCDF.

The shipped tsunami surrogate is queried on a 150x150 grid spanning its domain (a
coordinate-based decoder decodes anywhere), a hidden tsunami of the 48x48 simulator is
observed by a 10x10 buoy grid with 10 % noise, LEVDA runs with K = 100 and tau = 5, and
the lazily decoded analysis (100 x 51 x 150 x 150 x 3 float32 values, 1.4 GB) is streamed
to NetCDF chunk by chunk (``--helper``: with :func:`xlevda.write`; ``--spread-step F``:
with ``write(..., spread_step=F)``, which first computes each field's spread and range in
a pass of its own).  The script prints the process's peak RSS before and after
the write (the simulation of the truth and the assimilation come first); run it under
``/usr/bin/time -v`` for the whole process's peak::

    /usr/bin/time -v python benchmarks/memory/write_memory.py scratch/analysis150.nc
    /usr/bin/time -v python benchmarks/memory/write_memory.py scratch/a.nc --spread-step 0.1
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from xlevda import LEVDA, RunOptions, load_pretrained, write
from xlevda.demo import simulate_truth
from xlevda.systems import observe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="NetCDF file to write")
    parser.add_argument("--grid", type=int, default=150)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument(
        "--helper", action="store_true", help="write with xlevda.write instead of to_netcdf"
    )
    parser.add_argument(
        "--spread-step", type=float, default=None, help="write with xlevda.write(spread_step=)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained("tsunami")
    truth, _ = simulate_truth(model, seed=0)
    obs = observe.observe(truth, observe.GridStride(-(-len(truth.lat) // 10)), seed=1)
    lat, lon = (np.asarray(model.schema.grid[c]) for c in ("lat", "lon"))
    target = xr.Dataset(
        coords={
            "time": truth.time,
            "lat": ("lat", np.linspace(lat[0], lat[-1], args.grid), truth.lat.attrs),
            "lon": ("lon", np.linspace(lon[0], lon[-1], args.grid), truth.lon.attrs),
        }
    )
    t0 = time.perf_counter()
    an = target.levda.assimilate(obs, model, LEVDA(window=5), run=RunOptions(members=args.members))
    t1 = time.perf_counter()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.spread_step is not None:
        write(an, args.output, spread_step=args.spread_step)
    elif args.helper:
        write(an, args.output)
    else:
        an.to_netcdf(args.output)
    t2 = time.perf_counter()
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(v.size * v.dtype.itemsize for v in an.data_vars.values())
    print(
        f"grid {args.grid}x{args.grid}, K={args.members}, {an.sizes['time']} frames: "
        f"analysis {size / 1e9:.2f} GB as arrays; assimilate {t1 - t0:.1f} s, "
        f"write {t2 - t1:.1f} s, {Path(args.output).stat().st_size / 1e6:.0f} MB; "
        f"peak RSS {peak_before:.0f} MB before writing, "
        f"{peak_after:.0f} MB after"
    )


if __name__ == "__main__":
    main()
