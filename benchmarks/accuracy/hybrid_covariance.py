"""LEVDA ensemble-only vs the hybrid latent covariance on off-manifold tsunami truths (issue 16).

The shipped tsunami surrogate; truths simulated by :mod:`xlevda.systems.tsunami` with the
surrogate's training configuration except one setting (amplitude 1.5 m instead of 1 m by
default), one random source per seed; 10x10 buoys observing u, v, eta with 10 % noise (as
``xlevda demo``); ``LEVDA(window=5)`` with ``RunOptions(members=50)``.  Prints the relative
RMSE (all fields, each divided by its truth's standard deviation, time mean), spread/error and
wall-clock seconds of the ensemble-only analysis and of hybrid ones (``beta_e / beta_c``,
rank; ``+u``: ``B_c`` over the parameters too)::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/hybrid_covariance.py
    OMP_NUM_THREADS=2 python benchmarks/accuracy/hybrid_covariance.py --change sigma=1.6x --seeds 1

A measurement, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from xlevda.demo import SYSTEMS, training_config, twin_scores
from xlevda.methods import LEVDA, HybridCovariance
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions
from xlevda.systems import observe, tsunami

SETTINGS = {
    "ensemble only": None,
    "hybrid 1/0.05, r=8": HybridCovariance(static_weight=0.05, rank=8),
    "hybrid 1/0.1, r=8": HybridCovariance(static_weight=0.1, rank=8),
    "hybrid 1/0.1, r=32": HybridCovariance(static_weight=0.1, rank=32),
    "hybrid 1/0.1, r=8, +u": HybridCovariance(static_weight=0.1, rank=8, parameters=True),
}


def changed_config(model, change: str) -> tsunami.TsunamiConfig:
    """The training configuration with ``name=value`` (``value`` or ``<factor>x``) applied."""
    cfg = training_config(SYSTEMS["tsunami"], model)
    name, value = change.split("=")
    old = getattr(cfg, name)
    new = old * float(value[:-1]) if value.endswith("x") else float(value)
    return dataclasses.replace(cfg, **{name: new})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--change", default="amplitude=1.5", help="name=value or name=<f>x")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--members", type=int, default=50)
    args = parser.parse_args()
    model = load_pretrained("tsunami")
    cfg = changed_config(model, args.change)
    prior = dict(zip(model.schema.params, model.schema.param_range, strict=True))
    print(f"truth: {args.change}; members {args.members}; d_z = "
          f"{model.latent_dim} + {model.param_dim}")  # fmt: skip
    print(f"{'seed':>4} {'setting':<22} {'rel. RMSE':>9} {'spread/err':>10} {'param err':>9} "
          f"{'seconds':>7}")  # fmt: skip
    for seed in args.seeds:
        params = tsunami.sample_sources(1, seed=seed, config=cfg)
        truth = tsunami.simulate(**params, config=cfg, progress=False).isel(run=0)
        truth = truth[list(model.schema.variables)]
        stride = -(-max(truth.sizes[d] for d in truth.eta.dims if d != "time") // 10)
        obs = observe.observe(
            truth[["u", "v", "eta"]], observe.GridStride(stride), noise_ratio=0.1, seed=seed + 1
        )
        target = truth.drop_vars(list(truth.data_vars))
        true_params = {k: float(v[0]) for k, v in params.items()}
        for label, hybrid in SETTINGS.items():
            method = LEVDA(window=5, static_covariance=hybrid)
            t0 = time.perf_counter()
            an = target.levda.assimilate(
                obs, model, method, run=RunOptions(members=args.members, seed=seed)
            )
            scores = twin_scores(an, truth, true_params, prior, "eta")
            seconds = time.perf_counter() - t0
            print(
                f"{seed:>4} {label:<22} {float(scores.rrmse.mean()):>9.4f} "
                f"{float(scores.ser.mean()):>10.3f} {float(scores.param_err.mean()):>9.4f} "
                f"{seconds:>7.1f}"
            )


if __name__ == "__main__":
    main()
