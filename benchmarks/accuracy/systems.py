"""LEVDA on every benchmark system with a shipped surrogate, timed side by side in one run.

For each system (tsunami, Kolmogorov flow, sphere; those with a shipped surrogate), one twin
experiment as in ``xlevda demo SYSTEM`` (10 % noise, K = 100, tau = 5; a 10x10 sensor grid, 16x8
on the sphere): the per-window scores of the analysis and of the no-assimilation forecast,
the assimilation time and its ratio to the tsunami case measured in the same run, and a PNG per
system (fields, analysis mean, error, spread; relative RMSE over time with the member band).
Writes ``docs/results/systems.json`` and ``docs/results/levda_<system>.png``::

    OMP_NUM_THREADS=1 python benchmarks/accuracy/systems.py --seed 0
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from xlevda.demo import SYSTEMS, plot_twin, twin_experiment
from xlevda.pretrained import available

OUT = Path(__file__).resolve().parents[2] / "docs" / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = {
        "command": f"OMP_NUM_THREADS=1 python benchmarks/accuracy/systems.py --seed {args.seed} "
        f"--members {args.members}",
        "machine": f"{platform.machine()}, 1 torch thread, shared 2-core CPU",
        "systems": {},
    }
    for name in [s for s in SYSTEMS if s in available()]:
        twin = twin_experiment(name, args.seed, args.members)
        later = np.nonzero(twin.analysis.window_index.values >= 1)[0]
        a = twin.scores.isel(time=later).mean("time")
        f = twin.forecast_scores.isel(time=later).mean("time")
        end = twin.scores.isel(time=-1)
        record["systems"][name] = {
            "true_params": twin.true_params,
            "estimated_params": {
                p: float(twin.analysis[p].isel(time=-1).mean()) for p in twin.true_params
            },
            "assimilation_seconds": round(twin.seconds, 2),
            "n_observations": int(twin.obs.sizes["obs"]),
            "windows_1_on": {
                k: {"levda": round(float(a[k]), 5), "forecast": round(float(f[k]), 5)}
                for k in ("rrmse", "ser", "crps", "param_err")
            },
            "param_err_last_frame": round(float(end.param_err), 5),
        }
        plot_twin(
            OUT / f"levda_{name}.png",
            twin.truth,
            twin.analysis,
            twin.scores,
            twin.forecast_scores,
            SYSTEMS[name].main,
        )
        print(name, json.dumps(record["systems"][name]), flush=True)
    base = record["systems"].get("tsunami", {}).get("assimilation_seconds")
    for rec in record["systems"].values():
        rec["time_ratio_to_tsunami"] = (
            round(rec["assimilation_seconds"] / base, 3) if base else None
        )
    (OUT / "systems.json").write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v["time_ratio_to_tsunami"] for k, v in record["systems"].items()}))


if __name__ == "__main__":
    main()
