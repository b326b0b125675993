"""Train the shipped tsunami surrogate, reproducibly from a seed.

Simulates 200 tsunami runs on the CPU grid, splits them 120/40/40 into
training, validation and test runs (as in the paper), trains an LDNet with each
decoder family, reports test relative RMSE, parameter count and training time,
and saves the chosen model to ``xlevda/pretrained/tsunami.pt``.

With ``--pod`` the separable decoder is first initialized from a proper
orthogonal decomposition of the training frames (:mod:`xlevda.surrogates.pod`):
the basis network is fitted to the POD modes, the latent dynamics and the
coefficient network are trained against the frames' coefficients in that basis
(no spatial decoding), and ``--epochs`` end-to-end epochs then fine-tune it.

With ``--linear`` the model is the closed-form linear LDNet
(:mod:`xlevda.surrogates.linear`): a cosine-series decoder, ``--latent-dim - 1``
proper orthogonal modes, linear latent dynamics by least squares and the first
frame's dependence on the source by kernel ridge regression, the kernel width chosen
on the validation runs and the model then refitted on all 160 non-test runs.  Its
decoder and dynamics matrices are stored in float16 (``save(half=...)``).

Run from the repository root::

    python examples/train_tsunami_surrogate.py --decoder separable --epochs 400
    python examples/train_tsunami_surrogate.py --decoder mlp --epochs 150 --no-save
    python examples/train_tsunami_surrogate.py --pod --epochs 20 --lr 5e-4 \
        --basis-width 256 --coef-width 256 --n-fourier 128 --fourier-scale 3 \
        --pod-basis-steps 1500 --pod-coef-epochs 300 --data scratch/tsunami48.nc
    python examples/train_tsunami_surrogate.py --linear --latent-dim 641 --cosine-terms 28 \
        --data scratch/tsunami48.nc

(the last is the shipped model; the records are in the JSON lines file).

Results are printed and appended as JSON lines to ``docs/results/tsunami_surrogate.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xlevda
from xlevda._convert import build_schema
from xlevda._frames import DatasetFrameSource
from xlevda.surrogates import pod
from xlevda.surrogates.decoder_configs import DecoderConfig
from xlevda.surrogates.training import evaluate
from xlevda.systems import tsunami

ROOT = Path(__file__).resolve().parents[1]


def relative_rmse(pred: xr.Dataset, truth: xr.Dataset) -> dict[str, float]:
    """||pred - truth|| / ||truth|| over all runs, frames and grid points, per variable."""
    out = {}
    for v in truth.data_vars:
        p, t = pred[v].transpose(*truth[v].dims).values, truth[v].values
        out[str(v)] = float(np.sqrt(((p - t) ** 2).sum() / (t**2).sum()))
    return out


def normalized_rmse(model: xlevda.LDNet, pred: xr.Dataset, truth: xr.Dataset) -> float:
    """Relative error of all channels stacked after per-channel standardization."""
    norm = model.schema.output_norm
    num = den = 0.0
    for c, v in enumerate(model.schema.variables):
        p = (pred[v].transpose(*truth[v].dims).values - norm.offset[c]) / norm.scale[c]
        t = (truth[v].values - norm.offset[c]) / norm.scale[c]
        num += float(((p - t) ** 2).sum())
        den += float((t**2).sum())
    return float(np.sqrt(num / den))


def pod_initialize(
    fit_runs: xr.Dataset, params: list[str], config: xlevda.LDNetConfig, args: argparse.Namespace
) -> tuple[xlevda.LDNet, dict]:
    """POD, basis fit and coefficient-space training on the runs ``LDNet.fit`` trains on."""
    schema = build_schema(fit_runs, params, None)
    # The same training/validation split as LDNet.fit, so fine-tuning validates on unseen runs.
    n_runs = fit_runs.sizes["run"]
    n_val = max(1, round(config.train.validation_fraction * n_runs))
    order = np.random.default_rng(config.train.seed).permutation(n_runs)
    train_src = DatasetFrameSource(fit_runs, schema, order[n_val:])
    val_src = DatasetFrameSource(fit_runs, schema, order[:n_val])
    model = xlevda.LDNet(config, schema)
    n_basis = config.decoder.n_basis
    info: dict = {}
    t0 = time.perf_counter()
    u, points, values = pod.load_frames(train_src)
    basis = pod.pod_basis(values, n_basis)
    info["pod_seconds"] = round(time.perf_counter() - t0, 1)
    _, _, val_values = pod.load_frames(val_src)
    exact = torch.cat([basis.modes, torch.ones_like(basis.modes[:, :1])], 1)
    info["val_truncation_exact_pod"] = round(truncation(val_values, exact), 5)

    t0 = time.perf_counter()
    fit_cfg = pod.BasisFitConfig(steps=args.pod_basis_steps, lr=args.pod_basis_lr)
    losses = pod.fit_basis(model, points, basis, fit_cfg)
    info["basis_fit_seconds"] = round(time.perf_counter() - t0, 1)
    info["basis_fit_final_loss"] = round(losses[-1], 6)
    with torch.no_grad():
        prepared = model.decoder.basis_points(points)
    info["val_truncation_fitted_basis"] = round(truncation(val_values, prepared), 5)
    print(json.dumps(info), flush=True)

    t0 = time.perf_counter()
    targets = pod.coefficient_targets(values, prepared)
    coef_cfg = xlevda.TrainConfig(
        epochs=args.pod_coef_epochs, batch_size=8, lr=args.pod_coef_lr, seed=args.seed
    )
    losses = pod.train_coefficients(model, u, targets, coef_cfg)
    info["coef_train_seconds"] = round(time.perf_counter() - t0, 1)
    info["coef_train_final_loss"] = round(losses[-1], 6)
    info["val_relative_rmse_before_finetune"] = round(evaluate(model, val_src).rel_rmse, 5)
    print(json.dumps(info), flush=True)
    return model, info


def truncation(values: torch.Tensor, prepared: torch.Tensor) -> float:
    """Relative error of the best approximation of ``values`` (N, T, P, C) in a basis (P, K)."""
    residual = pod.coefficient_targets(values, prepared).residual.sum()
    return float(residual.clamp(min=0).sqrt() / values.double().square().sum().sqrt())


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decoder", choices=["separable", "mlp"], default="separable")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--grid", type=int, default=48)
    parser.add_argument("--latent-dim", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--dt0", type=float, default=0.1, help="initial latent Euler step")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for these sizes)"
    )
    parser.add_argument("--no-save", action="store_true", help="do not overwrite the shipped file")
    parser.add_argument(
        "--out",
        default=str(ROOT / "xlevda" / "pretrained" / "tsunami.pt"),
        help="where to save the model (default: the shipped file)",
    )
    parser.add_argument("--data", default=None, help="cache the simulated runs in this .nc file")
    parser.add_argument(
        "--refine",
        type=int,
        default=1,
        help="simulate on a grid this many times finer and average onto --grid (converged runs)",
    )
    parser.add_argument(
        "--resume", default=None, help="continue training from this saved model (same sizes)"
    )
    parser.add_argument(
        "--pod", action="store_true", help="POD-initialized training (separable decoder)"
    )
    parser.add_argument("--pod-basis-steps", type=int, default=1500, help="basis-fit Adam steps")
    parser.add_argument("--pod-basis-lr", type=float, default=1e-3)
    parser.add_argument(
        "--pod-coef-epochs", type=int, default=300, help="coefficient-space training epochs"
    )
    parser.add_argument("--pod-coef-lr", type=float, default=2e-3)
    parser.add_argument("--n-basis", type=int, default=256)
    parser.add_argument("--basis-width", type=int, default=128)
    parser.add_argument("--basis-depth", type=int, default=4)
    parser.add_argument("--coef-width", type=int, default=128)
    parser.add_argument("--coef-depth", type=int, default=3)
    parser.add_argument("--n-fourier", type=int, default=64)
    parser.add_argument("--fourier-scale", type=float, default=2.0)
    parser.add_argument("--activation", choices=["tanh", "silu", "gelu"], default="tanh")
    parser.add_argument("--mlp-width", type=int, default=64, help="MLP decoder width")
    parser.add_argument("--mlp-depth", type=int, default=3, help="MLP decoder hidden layers")
    parser.add_argument(
        "--points-per-frame", type=int, default=128, help="random points per frame (MLP decoder)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="runs per training batch")
    parser.add_argument(
        "--dynamics-linear", action="store_true", help="add a linear term to the vector field"
    )
    parser.add_argument(
        "--linear", action="store_true", help="the closed-form linear LDNet (cosine decoder)"
    )
    parser.add_argument(
        "--cosine-terms", type=int, default=28, help="cosine terms per axis (--linear)"
    )
    parser.add_argument(
        "--no-refit",
        action="store_true",
        help="--linear: fit on the training runs only (default: refit with the validation runs)",
    )
    return parser


def _load_runs(args: argparse.Namespace) -> tuple[xr.Dataset, float]:
    """The 200 simulated runs (from the ``--data`` cache when it exists) and seconds spent."""
    cfg = tsunami.TsunamiConfig(nx=args.grid, ny=args.grid)
    cache = Path(args.data) if args.data else None
    t0 = time.perf_counter()
    if cache is not None and cache.exists():
        runs = xr.open_dataset(cache).load()
    else:
        runs = tsunami.simulate(
            **tsunami.sample_sources(200, seed=args.seed, config=cfg),
            config=cfg,
            refine=args.refine,
            progress=True,
        )
        if cache is not None:
            runs.to_netcdf(cache)
    t_sim = time.perf_counter() - t0
    return runs, t_sim


def _ldnet_config(args: argparse.Namespace) -> xlevda.LDNetConfig:
    """The surrogate and training configuration of the options."""
    if args.linear:
        decoder: DecoderConfig = xlevda.CosineDecoderConfig(n_terms=args.cosine_terms)
        points = None
    elif args.decoder == "separable":
        decoder = xlevda.SeparableDecoderConfig(
            n_basis=args.n_basis,
            basis_width=args.basis_width,
            basis_depth=args.basis_depth,
            coef_width=args.coef_width,
            coef_depth=args.coef_depth,
            n_fourier=args.n_fourier,
            fourier_scale=args.fourier_scale,
        )
        points = None  # all grid points: the basis is then evaluated once per batch
    else:
        decoder = xlevda.MLPDecoderConfig(
            width=args.mlp_width,
            depth=args.mlp_depth,
            n_fourier=args.n_fourier,
            fourier_scale=args.fourier_scale,
        )
        points = args.points_per_frame  # the MLP decodes every (run, frame, point)
    config = xlevda.LDNetConfig(
        latent_dim=args.latent_dim,
        dynamics_width=64,
        dynamics_depth=4,
        dynamics_linear=args.dynamics_linear,
        dynamics=xlevda.LinearDynamicsConfig(refit=not args.no_refit) if args.linear else None,
        decoder=decoder,
        activation=args.activation,
        dt0=None if args.linear else args.dt0,
        learnable_dt=not args.linear,
        seed=args.seed,
        train=xlevda.TrainConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            points_per_frame=points,
            val_points_per_frame=None if points is None else 4 * points,
            lr=args.lr,
            lr_schedule="cosine",
            validation_fraction=0.25,
            seed=args.seed,
        ),
    )
    return config


def _report(args, model, test_runs, t_sim: float, t_train: float, pod_info, saved) -> None:
    """Score ``model`` on the test runs; print and append the record to the JSON lines file."""
    pred = model.predict(
        {p: test_runs[p] for p in model.schema.params}, times=test_runs.time.values
    )
    truth = test_runs[list(model.schema.variables)]
    rel = relative_rmse(pred, truth)
    result = {
        "decoder": "cosine (linear LDNet)" if args.linear else args.decoder,
        "grid": f"{args.grid}x{args.grid}",
        "refine": args.refine,
        "latent_dim": args.latent_dim,
        "epochs": None if args.linear else args.epochs,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(t_train, 1),
        "simulate_seconds_200_runs": round(t_sim, 1),
        "test_relative_rmse": {k: round(v, 5) for k, v in rel.items()},
        "test_relative_rmse_normalized_all": round(normalized_rmse(model, pred, truth), 5),
        "best_val_relative_rmse": None
        if model.history is None
        else round(float(min(model.history.val_rel_rmse)), 5),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
        "command": "python " + shlex.join(sys.argv),
    }
    if pod_info is not None:
        result["pod_initialization"] = pod_info
    if args.linear:
        result["linear_fit"] = {
            k: round(v, 6) if isinstance(v, float) else v
            for k, v in model.metadata["linear_fit"].items()
        }
    if saved is not None:
        result["saved"] = str(saved)
        result["file_mb"] = round(saved.stat().st_size / 1e6, 2)
    print(json.dumps(result, indent=2))
    out = ROOT / "docs" / "results" / "tsunami_surrogate.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        f.write(json.dumps(result) + "\n")


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.pod and (args.decoder != "separable" or args.resume):
        parser.error("--pod needs --decoder separable and no --resume")
    if args.linear and (args.pod or args.resume):
        parser.error("--linear takes neither --pod nor --resume")
    torch.set_num_threads(args.threads)

    runs, t_sim = _load_runs(args)
    runs = runs.astype("float32")
    fit_runs, test_runs = runs.isel(run=slice(0, 160)), runs.isel(run=slice(160, 200))

    config = _ldnet_config(args)
    t0 = time.perf_counter()
    initial = xlevda.load_surrogate(args.resume) if args.resume else None
    pod_info = None
    if args.pod:
        initial, pod_info = pod_initialize(fit_runs, ["src_lat", "src_lon"], config, args)
    model = xlevda.LDNet.fit(
        fit_runs, params=["src_lat", "src_lon"], config=config, initial=initial
    )
    t_train = time.perf_counter() - t0

    saved = None
    if not args.no_save:  # score the saved file (float16 parts included)
        saved = Path(args.out)
        model.save(saved, half=("decoder.weight", "dynamics.A") if args.linear else ())
        history, model = model.history, xlevda.load_surrogate(saved)
        model.history = history
    _report(args, model, test_runs, t_sim, t_train, pod_info, saved)


if __name__ == "__main__":
    main()
