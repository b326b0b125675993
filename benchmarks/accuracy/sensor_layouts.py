"""LEVDA with fixed, moving and irregularly timed sensors on the tsunami twin (paper Fig. 3).

The truth is simulated at every half frame, so that observations can fall between the
surrogate's latent steps (eq. 17); the analysis is scored on the 51 frames::

    python benchmarks/accuracy/sensor_layouts.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from xlevda import LEVDA, RunOptions, load_pretrained
from xlevda.demo import prior_forecast, twin_scores
from xlevda.systems import observe, tsunami


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained("tsunami")
    prior = dict(zip(model.schema.params, model.schema.param_range, strict=True))
    grid = model.schema.grid
    cfg = tsunami.TsunamiConfig(nx=len(grid["lon"]), ny=len(grid["lat"]))
    half = np.arange(2 * cfg.n_frames - 1) * cfg.frame_interval / 2
    layouts = {
        "10x10 fixed, every frame": (observe.GridStride(5), observe.FrameStride(2)),
        "100 moving, every frame": (observe.MovingPoints(100), observe.FrameStride(2)),
        "10x10 fixed, 51 irregular times": (observe.GridStride(5), observe.RandomTimes(51)),
        "100 moving, 51 irregular times": (observe.MovingPoints(100), observe.RandomTimes(51)),
    }
    print(f"{'case':>4} {'network':<32} {'rRMSE':>7} {'SER':>6} {'param':>7} {'s':>6}")
    for seed in args.seeds:
        src = tsunami.sample_sources(1, seed=seed, config=cfg)
        fine = tsunami.simulate(**src, config=cfg, output_times=half).isel(run=0)
        fine = fine[list(model.schema.variables)]
        truth = fine.isel(time=slice(0, None, 2))
        true = {k: float(v[0]) for k, v in src.items()}
        fc = twin_scores(prior_forecast(model, truth, seed, args.members), truth, true, prior)
        later = fc.isel(time=slice(5, None)).mean("time")
        print(
            f"{seed:>4} {'no assimilation':<32} {float(later.rrmse):7.3f} "
            f"{float(later.ser):6.2f} {100 * float(later.param_err):6.2f}%"
        )
        for name, (where, when) in layouts.items():
            obs = observe.observe(fine, where, when, noise_ratio=0.1, seed=seed + 1)
            t0 = time.perf_counter()
            an = truth.drop_vars(list(truth.data_vars)).levda.assimilate(
                obs, model, LEVDA(window=5), run=RunOptions(members=args.members, seed=seed)
            )
            elapsed = time.perf_counter() - t0
            s = twin_scores(an, truth, true, prior).isel(time=slice(5, None)).mean("time")
            print(
                f"{seed:>4} {name:<32} {float(s.rrmse):7.3f} {float(s.ser):6.2f} "
                f"{100 * float(s.param_err):6.2f}% {elapsed:6.1f}"
            )


if __name__ == "__main__":
    main()
