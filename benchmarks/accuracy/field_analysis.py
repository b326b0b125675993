"""LEVDA with and without the field analysis of its residuals, and OI alone (issue 16).

The shipped tsunami surrogate; truths simulated by :mod:`xlevda.systems.tsunami` with the
surrogate's training configuration (``train``) or with one setting changed (amplitude 1.5x,
source width ``sigma`` 1.6x, depth 120 m), one random source per seed; 10x10 buoys observing
u, v, eta with 10 % noise (as ``xlevda demo``); ``RunOptions(members=50)``.  Methods:
``LEVDA(window=5)`` with today's white model-error draws (``ModelErrorTerm()``), with
``FieldAnalysis()`` (estimated variance and length scale) and ``OI()`` (no model).  Prints per
case and seed the relative RMSE (all fields, each divided by its truth's standard deviation,
time mean), spread/error and seconds, then the medians over the seeds::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/field_analysis.py
    OMP_NUM_THREADS=2 python benchmarks/accuracy/field_analysis.py --cases train --seeds 0

A measurement, not a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from hybrid_covariance import changed_config

from xlevda.demo import SYSTEMS, training_config, twin_scores
from xlevda.methods import LEVDA, OI, FieldAnalysis
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions
from xlevda.systems import observe, tsunami

CASES = {
    "train": None,
    "amplitude 1.5x": "amplitude=1.5x",
    "width 1.6x": "sigma=1.6x",
    "depth 120 m": "depth=120",
}
METHODS = {
    "LEVDA (white draws)": LEVDA(window=5),
    "LEVDA + FieldAnalysis": LEVDA(window=5, model_error=FieldAnalysis()),
    "OI": OI(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=50)
    args = parser.parse_args()
    model = load_pretrained("tsunami")
    prior = dict(zip(model.schema.params, model.schema.param_range, strict=True))
    print(f"{'case':<15} {'seed':>4} {'method':<22} {'rel. RMSE':>9} {'spread/err':>10} "
          f"{'seconds':>7}")  # fmt: skip
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for case in args.cases:
        change = CASES[case]
        cfg = (
            training_config(SYSTEMS["tsunami"], model)
            if change is None
            else changed_config(model, change)
        )
        for seed in args.seeds:
            params = tsunami.sample_sources(1, seed=seed, config=cfg)
            truth = tsunami.simulate(**params, config=cfg, progress=False).isel(run=0)
            truth = truth[list(model.schema.variables)]
            stride = -(-max(truth.sizes[d] for d in truth.eta.dims if d != "time") // 10)
            obs = observe.observe(
                truth[["u", "v", "eta"]], observe.GridStride(stride), noise_ratio=0.1,
                seed=seed + 1,
            )  # fmt: skip
            target = truth.drop_vars(list(truth.data_vars))
            true_params = {k: float(v[0]) for k, v in params.items()}
            for label, method in METHODS.items():
                t0 = time.perf_counter()
                an = target.levda.assimilate(
                    obs, model, method, run=RunOptions(members=args.members, seed=seed)
                )
                scores = twin_scores(an, truth, true_params, prior, "eta")
                seconds = time.perf_counter() - t0
                rmse, ser = float(scores.rrmse.mean()), float(scores.ser.mean())
                results.setdefault((case, label), []).append((rmse, ser))
                print(f"{case:<15} {seed:>4} {label:<22} {rmse:>9.4f} {ser:>10.3f} "
                      f"{seconds:>7.1f}", flush=True)  # fmt: skip
    print(f"\nmedians over seeds {args.seeds}")
    for (case, label), values in results.items():
        rmse, ser = np.median(np.asarray(values), axis=0)
        print(f"{case:<15} {label:<22} {rmse:>9.4f} {ser:>10.3f}")


if __name__ == "__main__":
    main()
