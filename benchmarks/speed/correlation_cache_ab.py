"""LEVDA with the correlation cache off and on, side by side in one process.

The scaling benchmark's observations axis (``benchmarks/speed/scaling.py``): the demo's
tsunami twin observed at ``--points`` random points per frame (u, v, eta), K = 100, a 48x48
target; for each repeat the analysis is assimilated and its fields streamed (summed over the
members), first with :data:`xlevda.core.sparse_oi.CORRELATIONS` emptied and its budget 0
(nothing kept), then emptied with its budget back.  Prints the seconds of both parts and a
checksum of the fields (equal: the cache changes no value).

    OMP_NUM_THREADS=1 python benchmarks/speed/correlation_cache_ab.py --points 200 --repeats 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scaling

import xlevda
import xlevda.core.sparse_oi as sparse_oi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200, help="observed points per frame")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, target, obs, n_values = scaling.build(dict(scaling.BASE, obs_points=args.points))
    print(f"{n_values} observed values")
    cache, budget = sparse_oi.CORRELATIONS, sparse_oi.CORRELATIONS.budget
    for _ in range(args.repeats):
        for label, size in (("off", 0), ("on", budget)):
            cache.clear()
            cache.budget = size
            t0 = time.perf_counter()
            run = xlevda.RunOptions(members=100, seed=0)
            lazy = target.levda.assimilate(obs, model, xlevda.LEVDA(window=5), run=run)
            t1 = time.perf_counter()
            fields = lazy[list(scaling.VARIABLES)].sum("member").compute()
            t2 = time.perf_counter()
            print(
                f"cache {label}: assimilate {t1 - t0:.1f} s, decode {t2 - t1:.1f} s, "
                f"checksum {float(fields.eta.sum()):.6g}",
                flush=True,
            )


if __name__ == "__main__":
    main()
