"""Where LEVDA's spread/error per variable comes from, measured against the truth (issue 16).

One truth of a case of ``benchmarks/accuracy/off_manifold.py`` (10x10 buoys, 10 % noise,
K = 100, ``LEVDA(window=5)``), per variable and window, all in units of the truth's variance:

- ``mse``/``var``: the latent analysis alone (``model_error=None``): mean square error of its
  members' mean and its members' variance, on the grid;
- ``model``: the surrogate at the true parameters against the truth (the surrogate's own
  error), ``est``: the latent mean against the surrogate at the true parameters (the
  estimation error the spread should cover);
- ``excess``: ``mse - var`` (what a model-error term must add), on the grid and at the
  buoys (``excess@obs``);
- ``level``: the model-error variance the field analysis used (``<var>_model_error_std``
  squared, the pooled estimate);
- ``final``: spread/error of the default analysis (``FieldAnalysis()``).

A measurement, not a test::

    OMP_NUM_THREADS=1 nice python benchmarks/accuracy/spread_diagnosis.py --case train --seed 0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from xlevda.demo import SYSTEMS, training_config
from xlevda.methods import LEVDA
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions

sys.path.insert(0, str(Path(__file__).parent))
import off_manifold


def _by_window(x: xr.DataArray, window: np.ndarray) -> np.ndarray:
    """Means over the output times of each window (W,)."""
    x = x.mean([d for d in x.dims if d != "time"])
    return np.array([float(x.values[window == w].mean()) for w in np.unique(window)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", default="train", choices=off_manifold.CASES)
    parser.add_argument("--window", type=int, default=5)
    args = parser.parse_args()
    surrogate = load_pretrained("tsunami")
    cfg = training_config(SYSTEMS["tsunami"], surrogate)
    refine = int(surrogate.schema.attrs.get("refine", 1))
    truth, true = off_manifold.make_truth(args.case, cfg, args.seed, refine)
    obs = off_manifold._observe(truth, args.seed)
    target = truth.drop_vars(list(truth.data_vars))
    run = RunOptions(members=100, seed=args.seed)
    latent = target.levda.assimilate(
        obs, surrogate, LEVDA(window=args.window, model_error=None), run=run
    ).load()
    final = target.levda.assimilate(obs, surrogate, LEVDA(window=args.window), run=run).load()
    at_true = None
    if true:
        params = {k: xr.DataArray([v], dims="member") for k, v in true.items()}
        at_true = surrogate.predict(params, times=truth.time.values, where=truth).isel(member=0)
    window = np.arange(truth.sizes["time"]) // args.window
    buoys = {"lat": np.unique(obs.lat.values), "lon": np.unique(obs.lon.values)}
    for v in truth.data_vars:
        scale2 = float(truth[v].var())
        mean, var = latent[v].mean("member"), latent[v].var("member", ddof=1)
        sq = (mean - truth[v]) ** 2
        rows = {
            "mse": _by_window(sq, window),
            "var": _by_window(var, window),
            "excess": _by_window(sq - var, window),
            "excess@obs": _by_window((sq - var).sel(buoys, method="nearest"), window),
            "level": _by_window(final[f"{v}_model_error_std"] ** 2, window),
        }
        if at_true is not None:
            rows["model"] = _by_window((at_true[v] - truth[v]) ** 2, window)
            rows["est"] = _by_window((mean - at_true[v]) ** 2, window)
        f_sq = (final[v].mean("member") - truth[v]) ** 2
        f_var = final[v].var("member", ddof=1)
        rows["final mse"] = _by_window(f_sq, window)
        rows["final var"] = _by_window(f_var, window)
        rows["final s/e"] = np.sqrt(_by_window(f_var, window) / _by_window(f_sq, window))
        length = final[v].attrs.get("field_analysis_length_scale", 0.0)
        print(f"\n{v}: case {args.case!r} seed {args.seed}; units: truth variance "
              f"{scale2:.3g}; obs noise 0.01; length {length:.0f}")  # fmt: skip
        print(f"{'':11s}" + " ".join(f"{w:>8d}" for w in np.unique(window)) + "      all")
        for name, x in rows.items():
            if name != "final s/e":
                x = x / scale2
            total = (
                np.sqrt(float(f_var.mean()) / float(f_sq.mean()))
                if name == "final s/e"
                else float(np.mean(x))
            )
            print(f"{name:11s}" + " ".join(f"{a:8.2e}" for a in x) + f" {total:8.2e}")
    print()


if __name__ == "__main__":
    main()
