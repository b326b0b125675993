"""Shared-cost (the paper's warm starts) versus randomized (RML) members on the tsunami twin.

For a few hidden tsunamis (the demo's set-up: 10x10 buoys observing u, v, eta every
frame with 10 % noise, K = 100, tau = 5, the shipped surrogate) run LEVDA with
each ``member_mode`` (``RandomizedMaximumLikelihood()`` members from their EnKF start,
with and without the model-error term, and from their background members; the paper's
``SharedCost()``, with and without ``Inflation(additive=0.05)``) and print, averaged
over windows 1 onwards, the relative RMSE of the stacked state, the spread-error ratio,
the CRPS of eta and the parameter error, next to the no-assimilation forecast, and the
rank histogram of the analysed eta against the truth at the observed points (windows 1
onwards, the K + 1 ranks pooled into 10 bins; a calibrated ensemble is flat, an
over-confident one U-shaped)::

    python benchmarks/accuracy/member_modes.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import xarray as xr

from xlevda import LEVDA, RunOptions, load_pretrained
from xlevda.demo import prior_forecast, simulate_truth, twin_scores
from xlevda.errors import XlevdaError
from xlevda.methods import Inflation, RandomizedMaximumLikelihood, SharedCost
from xlevda.metrics import rank_histogram
from xlevda.systems import observe

MODES = {
    "randomized (EnKF start)": {"member_mode": RandomizedMaximumLikelihood()},
    "the same, no model error": {"member_mode": RandomizedMaximumLikelihood(), "model_error": None},
    "randomized, background start": {
        "member_mode": RandomizedMaximumLikelihood(start="background")
    },
    "shared cost": {"member_mode": SharedCost()},
    "shared cost, additive 0.05": {
        "member_mode": SharedCost(),
        "inflation": Inflation(additive=0.05),
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_pretrained("tsunami")
    prior = dict(zip(model.schema.params, model.schema.param_range, strict=True))
    rows: dict[str, list[np.ndarray]] = {}
    hists: dict[str, np.ndarray] = {}
    print(f"{'case':>4} {'mode':<24} {'rRMSE':>7} {'SER':>6} {'CRPS eta':>9} {'param':>7} {'s':>6}")
    for seed in args.seeds:
        truth, src = simulate_truth(model, seed)
        truth = truth[list(model.schema.variables)]
        obs = observe.observe(truth, observe.GridStride(-(-len(truth.lat) // 10)), seed=seed + 1)
        target = truth.drop_vars(list(truth.data_vars))
        fc_ens = prior_forecast(model, truth, seed, args.members)
        fc = twin_scores(fc_ens, truth, src, prior)
        at = {c: xr.DataArray(np.unique(obs[c].values), dims=f"obs_{c}") for c in ("lat", "lon")}
        results = {"forecast": (fc, 0.0, fc_ens)}
        for name, options in MODES.items():
            method, run = LEVDA(window=5, **options), RunOptions(members=args.members, seed=seed)
            t0 = time.perf_counter()
            try:
                an = target.levda.assimilate(obs, model, method, run=run)
            except XlevdaError as err:
                print(f"{seed:>4} {name:<24} failed: {str(err)[:70]}")
                continue
            results[name] = (twin_scores(an, truth, src, prior), time.perf_counter() - t0, an)
            window = an.window_index.values
        later_t = np.nonzero(window >= 1)[0]
        for name, (s, elapsed, ens) in results.items():
            later = s.isel(time=later_t).mean("time")
            ranks = rank_histogram(
                ens.eta.isel(time=later_t).sel(at),
                truth.eta.isel(time=later_t).sel(at),
                dim=["time", "obs_lat", "obs_lon"],
            ).values
            hists.setdefault(name, np.zeros_like(ranks))
            hists[name] = hists[name] + ranks
            vals = np.array([float(later[k]) for k in ("rrmse", "ser", "crps", "param_err")])
            rows.setdefault(name, []).append(vals)
            print(
                f"{seed:>4} {name:<24} {vals[0]:7.3f} {vals[1]:6.2f} {vals[2]:9.5f} "
                f"{100 * vals[3]:6.2f}% {elapsed:6.1f}"
            )
    print("\nmean over cases (windows >= 1)")
    for name, vals in rows.items():
        m = np.mean(vals, axis=0)
        print(f"     {name:<24} {m[0]:7.3f} {m[1]:6.2f} {m[2]:9.5f} {100 * m[3]:6.2f}%")
    print("\nrank histograms of eta at the observed points (windows >= 1), 10 pooled bins, %")
    print(f"     {'':<24} outside = truth below or above every member (calibrated: 2/(K+1))")
    for name, h in hists.items():
        pooled = np.array([b.sum() for b in np.array_split(h, 10)]) / h.sum()
        outside = (h[0] + h[-1]) / h.sum()
        bins = " ".join(f"{100 * p:4.1f}" for p in pooled)
        print(f"     {name:<24} {bins}  outside {100 * outside:5.1f} %")
    print(
        f"     {'calibrated':<24} " + " ".join(["10.0"] * 10) + f"  outside "
        f"{200 / (args.members + 1):5.1f} %"
    )


if __name__ == "__main__":
    main()
