"""Kolmogorov flow from random initial conditions: learned initial states against parameters only.

Every run has its own random initial field (``sample_reynolds(..., random_initial=True)``)
and its own Reynolds number.  Two LDNets are trained on the same runs and network sizes:
one with per-run learned initial states (``LDNetConfig(initial_state=LearnedInitialState())``)
and today's parameter-only LDNet (every run from ``s_{-1} = 0``).  On fresh truths (new
initial seeds and Reynolds numbers) the first is started from the latent state fitted to
the truth's first frame (``LDNet.encode_frame``) and forecasts the next frames; the second
forecasts from the truth's Reynolds number alone; persistence (the first frame repeated)
is the trivial reference.  Printed: the relative error per frame (frame 0 is the fit),
``||forecast - truth|| / ||truth||`` over the truths and the grid, per variable.

Run (about 8 minutes on 2 CPU cores)::

    python benchmarks/accuracy/kolmogorov_initial_states.py --runs 96 --epochs 150
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import xarray as xr

import xlevda
from xlevda.surrogates.config import LearnedInitialState
from xlevda.systems import kolmogorov as kg


def archive(cfg: kg.KolmogorovConfig, n_runs: int, seed: int, cache: Path | None):
    """Runs with random initial conditions and Re ~ U(500, 1500), cached as netCDF."""
    if cache is not None and cache.exists():
        return xr.open_dataset(cache).load()
    draws = kg.sample_reynolds(n_runs, seed=seed, random_initial=True)
    ds = kg.simulate(**draws, config=cfg, batch_size=n_runs)
    if cache is not None:
        ds.to_netcdf(cache)
    return ds


def model_config(args: argparse.Namespace, learned: bool) -> xlevda.LDNetConfig:
    """The same networks and training for both surrogates; only ``initial_state`` differs."""
    return xlevda.LDNetConfig(
        latent_dim=args.latent,
        dynamics_width=64,
        dynamics_depth=3,
        decoder=xlevda.SeparableDecoderConfig(n_basis=args.basis, basis_width=64, coef_width=64),
        initial_state=(
            LearnedInitialState(regularization=args.reg, lr_factor=args.table_lr)
            if learned
            else None
        ),
        train=xlevda.TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch,
            points_per_frame=None,
            val_points_per_frame=256,
            lr=args.lr,
            validation_fraction=0.1,
        ),
    )


def frame_errors(pred: xr.Dataset, truth: xr.Dataset) -> dict[str, np.ndarray]:
    """Relative error per frame over runs and grid, per variable."""
    out = {}
    for v in truth.data_vars:
        diff = pred[v].values - truth[v].values
        out[v] = np.sqrt((diff**2).sum((0, 2, 3)) / (truth[v].values ** 2).sum((0, 2, 3)))
    return out


def pod_errors(runs: xr.Dataset, ranks: list[int]) -> list[float]:
    """Relative error of the best rank-``d`` affine reconstruction of all training frames
    (proper orthogonal decomposition, variables stacked): what a linear decoder from a
    ``d``-dimensional latent state could reach at best."""
    x = np.concatenate([runs[v].values for v in runs.data_vars], -1)
    x = x.reshape(runs.sizes["run"] * runs.sizes["time"], -1)
    sv = np.linalg.svd(x - x.mean(0), compute_uv=False)
    total = np.sum(x**2)
    return [float(np.sqrt(np.sum(sv[d:] ** 2) / total)) for d in ranks]


def show(name: str, errors: dict[str, np.ndarray]) -> None:
    for v, e in errors.items():
        cells = " ".join(f"{x:6.3f}" for x in e)
        print(f"{name:<22} {v:<10} {cells}   mean(1..) {e[1:].mean():.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=32)
    p.add_argument("--frames", type=int, default=6, help="frame 0 and the forecast frames")
    p.add_argument("--runs", type=int, default=96, help="training runs")
    p.add_argument("--truths", type=int, default=8)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--basis", type=int, default=48, help="separable decoder's n_basis")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--reg", type=float, default=1e-3)
    p.add_argument("--table-lr", type=float, default=1.0, help="LearnedInitialState.lr_factor")
    p.add_argument("--only", choices=("learned", "params"), default=None)
    p.add_argument("--cache", type=Path, default=None, help="directory for the archives")
    args = p.parse_args()

    cfg = kg.KolmogorovConfig(nx=args.grid, ny=args.grid, n_frames=args.frames)
    cache = args.cache
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    tag = f"{args.grid}_{args.frames}"
    t0 = time.perf_counter()
    runs = archive(cfg, args.runs, 0, cache and cache / f"train_{tag}_{args.runs}.nc")
    truth = archive(cfg, args.truths, 12345, cache and cache / f"truth_{tag}_{args.truths}.nc")
    print(f"simulated {args.runs} + {args.truths} runs in {time.perf_counter() - t0:.0f} s")
    print(f"grid {args.grid}x{args.grid}, {args.frames} frames, epochs {args.epochs}")
    ranks = [args.latent, 4 * args.latent, 16 * args.latent]
    bounds = ", ".join(f"{d}: {e:.3f}" for d, e in zip(ranks, pod_errors(runs, ranks), strict=True))
    print(f"rank-d POD error of the training frames (d: error): {bounds}")
    print(f"{'':<22} {'variable':<10} relative error per frame (0 = fit or start)")
    show("persistence", frame_errors(truth.isel(time=[0] * args.frames), truth))

    for learned in (True, False):
        if args.only is not None and learned != (args.only == "learned"):
            continue
        t0 = time.perf_counter()
        model = xlevda.LDNet.fit(runs, ["Re"], model_config(args, learned), progress=False)
        seconds = time.perf_counter() - t0
        if learned:
            s0 = model.encode_frame(truth[list(truth.data_vars)].isel(time=0))
            pred = model.predict({"Re": truth.Re.values}, initial_latent=s0.values)
            name = "learned initial state"
        else:
            pred = model.predict({"Re": truth.Re.values})
            name = "parameters only"
        hist = model.history
        print(
            f"-- {name}: trained {seconds:.0f} s, {len(hist.epoch)} epochs, best {hist.best_epoch}"
            f" ({hist.stop_reason}); held-out training-archive runs:"
        )
        report = model.quality
        errors = map(np.array, report.frame_errors)
        show("  (fit report)", dict(zip(report.variables, errors, strict=True)))
        show(name, frame_errors(pred, truth))


if __name__ == "__main__":
    main()
