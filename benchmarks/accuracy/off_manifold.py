"""Analyses off the training manifold: methods side by side on truths the surrogate never saw.

Issue 16, item 6.  The shipped tsunami surrogate (trained on 48x48 runs of
:mod:`xlevda.systems.tsunami`, one source in the south-west quadrant, amplitude 1 m, width
50 km, depth 100 m) and truths simulated by the same package with one thing changed:

- ``train``: the training configuration (on the manifold, for reference);
- ``amplitude 1.5x``, ``width 1.6x``, ``depth 120 m``: one setting of the simulator changed;
- ``two sources``: the sum of two single-source runs (the equations are linear up to the
  ``(H + eta)`` flux term, ``eta / H`` about 1 %);
- ``source outside``: a source in the north-east quadrant, outside the training box;
- ``3x resolution``: the training configuration simulated at 144x144 and averaged 3x3 onto
  the 48x48 grid (``refine=3``: the 48x48 runs' resolution error is then model error);
- ``coarse grid``: the training configuration simulated on the 48x48 grid itself
  (``refine=1``), for surrogates trained on refined runs.

``--refine N`` simulates every other truth ``N`` times finer (default: as the surrogate's
training runs were, their ``refine`` attribute, else 1).

With ``--system kolmogorov``: the shipped Kolmogorov surrogate (64x64, Reynolds number
unknown, trained on runs from one initial condition), truths from that initial condition
(``train``) or from another (``new initial condition``), 10x10 sensors of u and v; no LETKF.

Each case has one truth per seed (its own source); 10x10 buoys observe u, v, eta at every
frame with 10 % noise (as ``xlevda demo``).  Methods on the same observations:

- ``LEVDA``: ``LEVDA(window=5, model_error=FieldAnalysis())`` (the field analysis of what the
  surrogate leaves unexplained);
- ``LEVDA ens-only``: the paper's variant, white model-error draws (``ModelErrorTerm()``);
- ``OI``: optimal interpolation of the buoys alone (no model, fitted covariance);
- ``free surrogate``: prior parameter draws rolled out by the surrogate, no observations;
- ``LETKF sim``: full-state LETKF through the same accessor with the simulator at the training
  settings as its model (the user's imperfect model), K = 40, its localization radius and
  inflation tuned on a separate training-configuration truth (seed 1000), as DAPPER's
  published settings are.

Reports per case and seed, then medians over the seeds: relative RMSE (all fields, each
divided by its truth's standard deviation, time mean), spread/error, CRPS of eta (m),
parameter error (fraction of the prior range; not for OI, nor for the two-source case where
no single source is true) and seconds (assimilation plus decoding).  Writes the medians as
markdown to ``--out`` (default ``docs/off_manifold.md``)::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/off_manifold.py               # ~2 h, 2-core CPU
    OMP_NUM_THREADS=2 python benchmarks/accuracy/off_manifold.py --system kolmogorov \
        --methods LEVDA "LEVDA ens-only" OI "free surrogate" --out /tmp/kolmogorov.md
    OMP_NUM_THREADS=2 python benchmarks/accuracy/off_manifold.py --seeds 0 --cases train \\
        "width 1.6x" --methods LEVDA OI --out /tmp/om.md                      # a few minutes

A measurement, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from xlevda import load_surrogate
from xlevda.demo import SYSTEMS, prior_forecast, training_config, twin_scores
from xlevda.methods import LETKF, LEVDA, OI, FieldAnalysis, Inflation, Localization
from xlevda.model_error import ModelErrorTerm
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions
from xlevda.systems import kolmogorov, observe, tsunami
from xlevda.systems.tsunami_model import TsunamiModel

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = ["u", "v", "eta"]
TUNE_SEED = 1000
RADII = (3.0, 6.0, 9.0)  # grid cells
INFLATIONS = (1.05, 1.2)


def _scaled(cfg: tsunami.TsunamiConfig, name: str, factor: float) -> tsunami.TsunamiConfig:
    return dataclasses.replace(cfg, **{name: getattr(cfg, name) * factor})


def _sources(seed: int, cfg: tsunami.TsunamiConfig, box: tuple[float, float]) -> dict:
    """One source with ``(x, y) = L (a - 1/2, b - 1/2)``, ``a, b ~ U(box)``."""
    a, b = np.random.default_rng(seed).uniform(*box, size=(2, 1))
    lat, lon = cfg.to_latlon(cfg.length * (a - 0.5), cfg.length * (b - 0.5))
    return {"src_lat": lat, "src_lon": lon}


def _run(cfg: tsunami.TsunamiConfig, src: dict, refine: int) -> xr.Dataset:
    run = tsunami.simulate(**src, config=cfg, progress=False, refine=refine)
    return run.isel(run=0)[VARIABLES]


def kolmogorov_truth(case: str, cfg, seed: int) -> tuple[xr.Dataset, dict]:
    """A Kolmogorov flow of the training configuration from the training runs' initial
    condition (``train``) or from another one (``new initial condition``, seed 1000 + seed)."""
    re = kolmogorov.sample_reynolds(1, seed=seed)["Re"]
    initial = None if case == "train" else [1000 + seed]
    truth = kolmogorov.simulate(re, cfg, initial_seed=initial).isel(run=0)
    return truth[["u", "v", "vorticity"]], {"Re": float(re[0])}


def make_truth(
    case: str, cfg: tsunami.TsunamiConfig, seed: int, refine: int = 1
) -> tuple[xr.Dataset, dict]:
    """The truth of ``case`` on the training grid and its source (``{}`` if not one),
    simulated ``refine`` times finer (``tsunami.simulate(refine=...)``) except in the
    resolution cases."""
    if isinstance(cfg, kolmogorov.KolmogorovConfig):
        return kolmogorov_truth(case, cfg, seed)
    inside = (0.0, 0.5)
    src = _sources(seed, cfg, inside)
    true = {k: float(v[0]) for k, v in src.items()}
    if case == "train":
        return _run(cfg, src, refine), true
    if case == "amplitude 1.5x":
        return _run(_scaled(cfg, "amplitude", 1.5), src, refine), true
    if case == "width 1.6x":
        return _run(_scaled(cfg, "sigma", 1.6), src, refine), true
    if case == "depth 120 m":
        return _run(dataclasses.replace(cfg, depth=120.0), src, refine), true
    if case == "two sources":
        other = _sources(seed + 10_000, cfg, inside)
        return _run(cfg, src, refine) + _run(cfg, other, refine), {}
    if case == "source outside":
        src = _sources(seed, cfg, (0.6, 0.9))
        return _run(cfg, src, refine), {k: float(v[0]) for k, v in src.items()}
    if case == "3x resolution":
        return _run(cfg, src, 3), true
    if case == "coarse grid":
        return _run(cfg, src, 1), true
    raise SystemExit(f"unknown case {case!r}")


KOLMOGOROV_CASES = ("train", "new initial condition")
CASES = (
    "train",
    "amplitude 1.5x",
    "width 1.6x",
    "depth 120 m",
    "two sources",
    "source outside",
    "3x resolution",
    "coarse grid",
)


def scores(
    ens: xr.Dataset, truth: xr.Dataset, true: dict, prior: dict, main: str = "eta"
) -> dict[str, float]:
    """Time means of rrmse, spread/error, CRPS of ``main`` and parameter error (NaN if none)."""
    has = bool(true) and all(p in ens for p in true)
    params = true if has else {}
    s = twin_scores(ens[list(truth.data_vars) + list(params)], truth, params, prior, main)
    out = {k: float(s[k].mean()) for k in ("rrmse", "ser", "crps")}
    return out | {"param_err": float(s.param_err.mean())}


def tune_letkf(
    model: TsunamiModel, cfg, members: int, radii=RADII, inflations=INFLATIONS, refine: int = 1
) -> LETKF:
    """LETKF's radius (cells) and inflation with the lowest relative RMSE on a held-out truth
    (a single radius and inflation: that LETKF, without a tuning run)."""
    cells = cfg.length / cfg.nx / 1e3  # km per grid cell
    if len(radii) == 1 and len(inflations) == 1:
        radius, inflation = radii[0] * cells, inflations[0]
        return LETKF(inflation=Inflation(inflation), localization=Localization(radius))
    truth, _ = make_truth("train", cfg, TUNE_SEED, refine)
    obs = _observe(truth, TUNE_SEED)
    initial = tsunami.sample_sources(members, seed=TUNE_SEED + 5_000, config=cfg)
    best: tuple[float, LETKF] | None = None
    for radius in radii:
        for inflation in inflations:
            method = LETKF(
                inflation=Inflation(inflation),
                localization=Localization(radius * cells),
            )
            an = _full_state(truth, obs, model, method, initial, TUNE_SEED, members)
            err = scores(an, truth, {}, {})["rrmse"]
            print(f"  tune LETKF radius {radius:g} cells, inflation {inflation:g}: {err:.4f}")
            if best is None or err < best[0]:
                best = (err, method)
    assert best is not None
    return best[1]


def _observe(truth: xr.Dataset, seed: int, observed=VARIABLES) -> xr.Dataset:
    """10x10 sensors (a grid stride) observing ``observed`` at every frame, 10 % noise."""
    stride = -(-max(n for d, n in truth.sizes.items() if d != "time") // 10)
    return observe.observe(
        truth[list(observed)], observe.GridStride(stride), noise_ratio=0.1, seed=seed + 1
    )


def _full_state(truth, obs, model, method, initial, seed, members) -> xr.Dataset:
    target = truth.drop_vars(list(truth.data_vars))
    run = RunOptions(members=members, seed=seed, dtype="float32")
    an = target.levda.assimilate(obs, model, method, run=run, background=initial)
    return an[[*VARIABLES, *model.schema.params]].transpose("time", "member", ...).load()


def methods(surrogate, sim, letkf: LETKF | None, args) -> dict[str, Callable]:
    """Each method as ``fn(truth, obs, seed) -> ensemble (time, member, lat, lon)``."""

    def latent(method) -> Callable:
        def fn(truth, obs, seed):
            target = truth.drop_vars(list(truth.data_vars))
            run = RunOptions(members=args.members, seed=seed)
            return target.levda.assimilate(obs, surrogate, method, run=run).load()

        return fn

    out = {
        "LEVDA": latent(LEVDA(window=5, model_error=FieldAnalysis())),
        "LEVDA ens-only": latent(LEVDA(window=5, model_error=ModelErrorTerm())),
        "OI": latent(OI()),
        "free surrogate": lambda truth, obs, seed: prior_forecast(
            surrogate, truth, seed, args.members
        ).load(),
    }
    if letkf is not None and sim is not None:
        cfg = sim.config

        def full(truth, obs, seed):
            initial = tsunami.sample_sources(args.full_members, seed=seed + 5_000, config=cfg)
            return _full_state(truth, obs, sim, letkf, initial, seed, args.full_members)

        out["LETKF sim"] = full
    return {k: v for k, v in out.items() if k in args.methods}


def markdown(medians: dict, seeds, letkf: LETKF | None, system: str, refine: int) -> str:
    lines = [
        f"# Off the training manifold (issue 16): {system}",
        "",
        f"Written by `python benchmarks/accuracy/off_manifold.py --system {system}` "
        f"(tsunami truths refined {refine}x) on "
        f"{platform.machine()} ({torch.get_num_threads()} torch threads); medians over the "
        f"truths of seeds {list(seeds)}.  Relative RMSE of all fields (each divided by its "
        "truth's standard deviation), spread/error, CRPS of the main variable, parameter error "
        "(fraction of the prior range), seconds (assimilation and decoding).",
        "",
    ]
    if letkf is not None:
        lines += [f"LETKF as tuned on the held-out truth: `{letkf!r}`.", ""]
    lines += [
        "| case | method | rel. RMSE | spread/error | CRPS main | param. error | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (case, name), m in medians.items():
        lines.append(
            f"| {case} | {name} | {m['rrmse']:.4f} | {m['ser']:.2f} | {m['crps']:.5f} | "
            f"{m['param_err']:.4f} | {m['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=["tsunami", "kolmogorov"], default="tsunami")
    parser.add_argument("--cases", nargs="+", choices=sorted({*CASES, *KOLMOGOROV_CASES}))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--full-members", type=int, default=40)
    all_methods = ["LEVDA", "LEVDA ens-only", "OI", "free surrogate", "LETKF sim"]
    parser.add_argument("--methods", nargs="+", default=all_methods, choices=all_methods)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "off_manifold.md")
    parser.add_argument("--refine", type=int, help="tsunami truths N times finer")
    parser.add_argument("--surrogate", type=Path, help="a surrogate file instead of the shipped")
    parser.add_argument("--radii", type=float, nargs="+", default=RADII, help="LETKF, cells")
    parser.add_argument("--inflations", type=float, nargs="+", default=INFLATIONS)
    args = parser.parse_args()
    system = SYSTEMS[args.system]
    if args.cases is None:
        args.cases = list(CASES if args.system == "tsunami" else KOLMOGOROV_CASES)
    surrogate = (
        load_pretrained(args.system) if args.surrogate is None else load_surrogate(args.surrogate)
    )
    if args.refine is None:
        args.refine = int(surrogate.schema.attrs.get("refine", 1))
    cfg = training_config(system, surrogate)
    prior = dict(zip(surrogate.schema.params, surrogate.schema.param_range, strict=True))
    letkf = sim = None
    if args.system == "tsunami":
        sim = TsunamiModel(cfg, dtype=torch.float32)
        if "LETKF sim" in args.methods:
            letkf = tune_letkf(
                sim, cfg, args.full_members, args.radii, args.inflations, args.refine
            )
    runs = methods(surrogate, sim, letkf, args)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    print(f"{'case':<15} {'seed':>4} {'method':<15} {'rRMSE':>7} {'s/e':>5} {'CRPS':>8} "
          f"{'param':>7} {'s':>6}")  # fmt: skip
    for case in args.cases:
        for seed in args.seeds:
            truth, true = make_truth(case, cfg, seed, args.refine)
            obs = _observe(truth, seed, system.observed)
            for name, fn in runs.items():
                t0 = time.perf_counter()
                ens = fn(truth, obs, seed)
                m = scores(ens, truth, true, prior, system.main)
                m["seconds"] = time.perf_counter() - t0
                results.setdefault((case, name), []).append(m)
                print(f"{case:<15} {seed:>4} {name:<15} {m['rrmse']:>7.4f} {m['ser']:>5.2f} "
                      f"{m['crps']:>8.5f} {m['param_err']:>7.4f} {m['seconds']:>6.1f}",
                      flush=True)  # fmt: skip
    medians = {
        key: {k: float(np.median([v[k] for v in values])) for k in values[0]}
        for key, values in results.items()
    }
    text = markdown(medians, args.seeds, letkf, args.system, args.refine)
    args.out.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
