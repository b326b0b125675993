"""Train the shipped Kolmogorov-flow or sphere surrogate, reproducibly from a seed.

Simulates 200 runs of the chosen system at CPU scale (or reads them from a
cache), splits them 120/40/40 into training, validation and test runs (as in
the paper), trains an LDNet with the separable decoder, reports the test
relative RMSE per variable, parameter count, file size and training time, and
saves the model to ``xlevda/pretrained/<system>.pt``.

Run from the repository root with one torch thread.  The shipped files came from a
cosine-schedule run followed by warm restarts at a lower learning rate (``--resume``
continues a saved model of the same sizes; ``--out`` saves elsewhere than the shipped
file, e.g. to compare before replacing it)::

    export OMP_NUM_THREADS=1
    python examples/train_system_surrogate.py --system kolmogorov --epochs 150 \
        --data scratch/kolmogorov64.nc --out scratch/kolmogorov_1.pt
    python examples/train_system_surrogate.py --system kolmogorov --epochs 50 --lr 0.001 \
        --data scratch/kolmogorov64.nc --resume scratch/kolmogorov_1.pt
    python examples/train_system_surrogate.py --system sphere --epochs 300 \
        --data scratch/sphere32.nc --out scratch/sphere_1.pt
    python examples/train_system_surrogate.py --system sphere --epochs 150 --lr 0.001 \
        --data scratch/sphere32.nc --resume scratch/sphere_1.pt --out scratch/sphere_2.pt
    python examples/train_system_surrogate.py --system sphere --epochs 100 --lr 0.001 \
        --data scratch/sphere32.nc --resume scratch/sphere_2.pt

Results are printed and appended as JSON lines to
``docs/results/<system>_surrogate.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from train_tsunami_surrogate import normalized_rmse, relative_rmse

import xlevda
from xlevda.systems import kolmogorov, sphere, sphere_config

ROOT = Path(__file__).resolve().parents[1]
N_RUNS, N_TEST = 200, 40


@dataclass(frozen=True)
class SystemSetup:
    """How one system is simulated and which coordinates are its parameters."""

    params: tuple[str, ...]
    space: tuple[str, str]
    grid: int
    latent_dim: int
    n_basis: int


SETUPS = {
    "kolmogorov": SystemSetup(("Re",), ("y", "x"), grid=64, latent_dim=10, n_basis=256),
    "sphere": SystemSetup(("h_f0", "sigma"), ("lat", "lon"), grid=32, latent_dim=16, n_basis=128),
}


def simulate(system: str, grid: int, frames: int | None, seed: int) -> xr.Dataset:
    """``N_RUNS`` runs of ``system``: a ``grid`` x ``grid`` box, or ``grid`` Gauss latitudes."""
    if system == "kolmogorov":
        cfg = kolmogorov.KolmogorovConfig(nx=grid, ny=grid, n_frames=frames or 40)
        return kolmogorov.simulate(**kolmogorov.sample_reynolds(N_RUNS, seed=seed), config=cfg)
    cfg = sphere_config.SphereConfig(nlat=grid, n_frames=frames or 32)
    return sphere.simulate(**sphere.sample_forcing(N_RUNS, seed=seed, config=cfg), config=cfg)


def load_runs(args: argparse.Namespace) -> tuple[xr.Dataset, float | None]:
    """Simulated runs and the simulation's wall time in seconds.

    Runs are read from ``args.data`` when cached there (and simulated and written there
    first if not, then read back, so that a fresh and a cached run give the same schema
    for ``--resume``).  The cache keeps the simulation time in its ``simulate_seconds``
    attribute, which is removed from the returned runs so that it does not enter the
    surrogate's schema.
    """
    cache = Path(args.data) if args.data else None
    if cache is None or not cache.exists():
        t0 = time.perf_counter()
        runs = simulate(args.system, args.grid, args.frames, args.seed)
        seconds = round(time.perf_counter() - t0, 1)
        if cache is None:
            return runs, seconds
        runs.assign_attrs(simulate_seconds=seconds).to_netcdf(cache)
    runs = xr.open_dataset(cache).load()
    return runs, runs.attrs.pop("simulate_seconds", None)


def model_config(args: argparse.Namespace, setup: SystemSetup) -> xlevda.LDNetConfig:
    """Separable decoder on all grid points (its basis is then evaluated once per batch)."""
    decoder = xlevda.SeparableDecoderConfig(
        n_basis=args.n_basis or setup.n_basis,
        basis_width=128,
        basis_depth=4,
        coef_width=128,
        coef_depth=3,
        n_fourier=64,
        fourier_scale=args.fourier_scale,
    )
    return xlevda.LDNetConfig(
        latent_dim=args.latent_dim or setup.latent_dim,
        dynamics_width=64,
        dynamics_depth=4,
        decoder=decoder,
        dt0=args.dt0,
        seed=args.seed,
        train=xlevda.TrainConfig(
            epochs=args.epochs,
            batch_size=8,
            points_per_frame=None,
            val_points_per_frame=None,
            lr=args.lr,
            lr_schedule="cosine",
            validation_fraction=0.25,
            seed=args.seed,
        ),
    )


def seam_ratio(pred: xr.Dataset, truth: xr.Dataset, dim: str) -> float:
    """RMS error on the first and last columns of ``dim`` over the RMS error elsewhere."""
    err = sum(((pred[v] - truth[v]) / float(truth[v].std())) ** 2 for v in truth.data_vars)
    n = err.sizes[dim]
    edge = err.isel({dim: [0, n - 1]}).mean()
    inner = err.isel({dim: slice(1, n - 1)}).mean()
    return float(np.sqrt(edge / inner))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", choices=sorted(SETUPS), required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--grid", type=int, default=None, help="nx = ny, or nlat (sphere)")
    parser.add_argument("--frames", type=int, default=None, help="frames per run")
    parser.add_argument("--latent-dim", type=int, default=None)
    parser.add_argument("--n-basis", type=int, default=None)
    parser.add_argument("--fourier-scale", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dt0", type=float, default=0.1, help="initial latent Euler step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest)")
    parser.add_argument("--no-save", action="store_true", help="do not overwrite the shipped file")
    parser.add_argument("--out", default=None, help="save here (default: the shipped file)")
    parser.add_argument("--data", default=None, help="cache the simulated runs in this .nc file")
    parser.add_argument(
        "--resume", default=None, help="continue training from this saved model (same sizes)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    setup = SETUPS[args.system]
    args.grid = args.grid or setup.grid

    runs, simulate_seconds = load_runs(args)
    runs = runs.astype("float32")
    fit_runs = runs.isel(run=slice(0, N_RUNS - N_TEST))
    test_runs = runs.isel(run=slice(N_RUNS - N_TEST, N_RUNS))
    config = model_config(args, setup)

    t0 = time.perf_counter()
    initial = xlevda.load_surrogate(args.resume) if args.resume else None
    model = xlevda.LDNet.fit(fit_runs, params=list(setup.params), config=config, initial=initial)
    t_train = time.perf_counter() - t0

    pred = model.predict({p: test_runs[p] for p in setup.params}, times=test_runs.time.values)
    truth = test_runs[list(model.schema.variables)]
    labelled = all(d in pred[v].dims for v in pred.data_vars for d in setup.space)
    rel = relative_rmse(pred, truth)
    val = model.history.val_rel_rmse
    curve_at = np.linspace(0, len(val) - 1, 11).round().astype(int)
    grid = "x".join(str(runs.sizes[d]) for d in setup.space)
    result = {
        "system": args.system,
        "decoder": asdict(config.decoder),
        "grid": grid,
        "frames": runs.sizes["time"],
        "runs_train_val_test": [120, 40, 40],
        "latent_dim": config.latent_dim,
        "epochs": args.epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(t_train, 1),
        "simulate_seconds_200_runs": simulate_seconds,
        "test_relative_rmse": {k: round(v, 5) for k, v in rel.items()},
        "test_relative_rmse_normalized_all": round(normalized_rmse(model, pred, truth), 5),
        "best_val_relative_rmse": round(float(min(val)), 5),
        "best_epoch": model.history.best_epoch,
        "val_relative_rmse_curve": {int(e): round(float(val[e]), 4) for e in curve_at},
        "output_dims": list(pred[model.schema.variables[0]].dims),
        "output_labelled_on_grid": labelled,
        "machine": f"{platform.machine()} {torch.get_num_threads()} thread(s), shared 2-core CPU",
        "command": f"OMP_NUM_THREADS={args.threads} python examples/train_system_surrogate.py "
        f"--system {args.system} --epochs {args.epochs} --grid {args.grid} --lr {args.lr} "
        f"--dt0 {args.dt0} --latent-dim {config.latent_dim} "
        f"--n-basis {config.decoder.n_basis} --fourier-scale {args.fourier_scale} "
        f"--threads {args.threads}"
        + (f" --frames {args.frames}" if args.frames else "")
        + (f" --data {args.data}" if args.data else "")
        + (f" --resume {args.resume}" if args.resume else "")
        + (f" --out {args.out}" if args.out else ""),
    }
    if args.system == "sphere":
        result["lon_seam_error_ratio"] = round(seam_ratio(pred, truth, "lon"), 3)
    if not args.no_save:
        target = Path(args.out or ROOT / "xlevda" / "pretrained" / f"{args.system}.pt")
        model.save(target)
        result["saved"] = str(target)
        result["file_megabytes"] = round(target.stat().st_size / 1e6, 2)
        print(f"saved {target}")
    print(json.dumps(result, indent=2))
    out = ROOT / "docs" / "results" / f"{args.system}_surrogate.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
