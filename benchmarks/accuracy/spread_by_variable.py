"""Spread/error of LEVDA per variable on the tsunami twin, by model-error treatment.

One truth of the training configuration (simulated as refined as the shipped surrogate's
training runs), 10x10 buoys with 10 % noise, K = 100 (the set-up of
``benchmarks/accuracy/off_manifold.py``), analysed with the field analysis (the default),
the field analysis without its draws, the paper's white draws, and no model-error term.
Printed: relative RMSE and spread/error over all fields (as the off-manifold table), and the
ratio of the ensemble spread to the ensemble mean's error per variable (root mean squares over
time and grid) and the model-error standard deviation of each variable as a fraction of its
truth's (``<var>_model_error_std``, its mean over time).  A measurement, not a test::

    OMP_NUM_THREADS=1 python benchmarks/accuracy/spread_by_variable.py --seeds 0 \\
        --cases train "width 1.6x" --variants "field analysis"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from xlevda.demo import SYSTEMS, training_config, twin_scores
from xlevda.methods import LEVDA, FieldAnalysis
from xlevda.model_error import ModelErrorTerm
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions

sys.path.insert(0, str(Path(__file__).parent))
import off_manifold

VARIANTS = {
    "field analysis": LEVDA(window=5),
    "field analysis, no draws": LEVDA(window=5, model_error=FieldAnalysis(draws=False)),
    "white draws": LEVDA(window=5, model_error=ModelErrorTerm()),
    "none": LEVDA(window=5, model_error=None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cases", nargs="+", default=["train"], choices=off_manifold.CASES)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    surrogate = load_pretrained("tsunami")
    cfg = training_config(SYSTEMS["tsunami"], surrogate)
    refine = int(surrogate.schema.attrs.get("refine", 1))
    for case in args.cases:
        for seed in args.seeds:
            print(f"{case!r}, seed {seed}", flush=True)
            _case(surrogate, cfg, refine, case, seed, args.variants)


def _case(surrogate, cfg, refine: int, case: str, seed: int, variants) -> None:
    truth, _ = off_manifold.make_truth(case, cfg, seed, refine)
    obs = off_manifold._observe(truth, seed)
    target = truth.drop_vars(list(truth.data_vars))
    for name in variants:
        method = VARIANTS[name]
        run = RunOptions(members=100, seed=seed)
        an = target.levda.assimilate(obs, surrogate, method, run=run).load()
        s = twin_scores(an[list(truth.data_vars)], truth, {}, {}, "eta")
        ratio = {
            str(v): float(
                np.sqrt(an[v].var("member").mean())
                / np.sqrt(((an[v].mean("member") - truth[v]) ** 2).mean())
            )
            for v in truth.data_vars
        }
        level = {
            str(v): float(an[f"{v}_model_error_std"].mean() / truth[v].std())
            for v in truth.data_vars
            if f"{v}_model_error_std" in an
        }
        print(
            f"{name:26s} rel. RMSE {float(s.rrmse.mean()):.4f}  spread/error "
            f"{float(s.ser.mean()):.2f}  per variable "
            + ", ".join(f"{v} {r:.2f}" for v, r in ratio.items())
            + ("  model-error std / truth std " if level else "")
            + ", ".join(f"{v} {x:.4f}" for v, x in level.items()),
            flush=True,
        )


if __name__ == "__main__":
    main()
