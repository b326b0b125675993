"""How accurate can a *linear* latent model of the tsunami be?

A diagnostic for the shipped surrogate's accuracy (issue 2).  The tsunami is
linear shallow water up to its 1 % continuity nonlinearity, so a latent state of
POD coefficients evolving by one fixed matrix should describe it; what is left to
learn nonlinearly is only the first frame's coefficients as a function of the
source.  This script measures each part on the cached 200-run, 48x48 data set with
the shipped surrogate's split (training runs 0-119, validation 120-159, test
160-199), every variable standardized by its training standard deviation:

1. **POD**: the rank-``r`` projection of the test runs onto the training runs'
   POD modes of the stacked (u, v, eta) frames;
2. **linear dynamics**: ``c_{n+1} = M c_n`` with ``M`` the least-squares fit over
   all consecutive training frames (dynamic mode decomposition), rolled out over
   the 51 frames from each test run's exact first-frame coefficients;
3. **initial coefficients from the source**: the same rollout from ``c_0(a, b)``
   regressed on the 120 training sources by Gaussian-kernel ridge regression, the
   kernel width chosen on the validation runs;
4. optionally (``--cosine N``) the modes stored as an ``N x N`` cosine series on
   the box (how a decoder could evaluate them anywhere at a fraction of the storage).

Errors are ``||pred - truth|| / ||truth||`` per variable and all stacked.  Run from
the repository root (the data file is written by
``examples/train_tsunami_surrogate.py --data scratch/tsunami48.nc``)::

    OMP_NUM_THREADS=2 python benchmarks/accuracy/linear_latent.py scratch/tsunami48.nc \
        --ranks 256 512 768
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import xarray as xr

VARIABLES = ("u", "v", "eta")
TRAIN, VAL, TEST = slice(0, 120), slice(120, 160), slice(160, 200)


def _errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Relative errors per variable and stacked: arrays (run, time, C, points)."""
    out = {
        v: float(np.linalg.norm(pred[:, :, c] - truth[:, :, c]) / np.linalg.norm(truth[:, :, c]))
        for c, v in enumerate(VARIABLES)
    }
    out["all"] = float(np.linalg.norm(pred - truth) / np.linalg.norm(truth))
    return {k: round(e, 4) for k, e in out.items()}


def _cosine_projector(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine series ``cos(m pi (x - x_0) / L)`` on the cell-centred axis and its pseudo-inverse."""
    step = coord[1] - coord[0]
    phase = (coord - coord[0] + step / 2) / (coord[-1] - coord[0] + step)
    basis = np.cos(np.pi * np.outer(phase, np.arange(n)))
    return basis, np.linalg.pinv(basis)


def _gauss_kernel(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * width**2))


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="the cached 200-run tsunami data set (.nc)")
    parser.add_argument("--ranks", type=int, nargs="+", default=[256, 512, 768])
    parser.add_argument("--cosine", type=int, default=0, help="cosine terms per axis (0: none)")
    parser.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=[0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1],
        help="kernel widths tried, in units of the box side",
    )
    parser.add_argument("--ridge", type=float, default=1e-8)
    return parser


def main() -> None:
    args = _parser().parse_args()

    ds = xr.open_dataset(args.data).load()
    fields = np.stack([ds[v].values for v in VARIABLES], 2)  # (run, time, C, y, x)
    fields = fields / fields[TRAIN].std(axis=(0, 1, 3, 4))[:, None, None]
    n_runs, n_frames, n_ch, ny, nx = fields.shape
    side = float(ds.x.values[-1] - ds.x.values[0] + ds.x.values[1] - ds.x.values[0])
    sources = np.stack([ds.src_x.values, ds.src_y.values], -1) / side
    truth = fields[TEST].reshape(-1, n_frames, n_ch, ny * nx)
    if args.cosine:
        by, py = _cosine_projector(ds.y.values, args.cosine)
        bx, px = _cosine_projector(ds.x.values, args.cosine)
        flat = np.einsum("my,rtcyx,nx->rtcmn", py, fields, px, optimize=True)
        trunc = np.einsum("ym,rtcmn,xn->rtcyx", by, flat[TEST], bx, optimize=True)
        print(
            json.dumps(
                {
                    "cosine_terms": args.cosine,
                    "truncation_test": _errors(trunc.reshape(truth.shape), truth),
                }
            ),
            flush=True,
        )
        flat = flat.reshape(n_runs, n_frames, -1)

        def to_points(coef: np.ndarray) -> np.ndarray:
            c = coef.reshape(*coef.shape[:2], n_ch, args.cosine, args.cosine)
            return np.einsum("ym,rtcmn,xn->rtcyx", by, c, bx, optimize=True).reshape(truth.shape)
    else:
        flat = fields.reshape(n_runs, n_frames, -1)

        def to_points(coef: np.ndarray) -> np.ndarray:
            return coef.reshape(truth.shape)

    t0 = time.perf_counter()
    snapshots = torch.from_numpy(flat[TRAIN].reshape(-1, flat.shape[-1]).astype(np.float32))
    _, _, v = torch.svd_lowrank(snapshots, q=max(args.ranks) + 32, niter=4)
    svd_s = time.perf_counter() - t0

    for rank in args.ranks:
        modes = v[:, :rank].double().numpy()
        coef = flat @ modes  # (run, time, rank)
        before = coef[TRAIN, :-1].reshape(-1, rank)
        after = coef[TRAIN, 1:].reshape(-1, rank)
        step, *_ = np.linalg.lstsq(before, after, rcond=None)

        def rollout(c0: np.ndarray, step: np.ndarray = step) -> np.ndarray:
            out = [c0]
            for _ in range(n_frames - 1):
                out.append(out[-1] @ step)
            return np.stack(out, 1)

        def decode(c: np.ndarray, modes: np.ndarray = modes) -> np.ndarray:
            return to_points(c @ modes.T)

        best = None
        k_train = {w: _gauss_kernel(sources[TRAIN], sources[TRAIN], w) for w in args.widths}
        for w in args.widths:
            weights = np.linalg.solve(k_train[w] + args.ridge * np.eye(120), coef[TRAIN, 0])
            c0_val = _gauss_kernel(sources[VAL], sources[TRAIN], w) @ weights
            err = np.linalg.norm(c0_val - coef[VAL, 0]) / np.linalg.norm(coef[VAL, 0])
            if best is None or err < best[1]:
                best = (w, err, weights)
        width, val_err, weights = best
        c0_test = _gauss_kernel(sources[TEST], sources[TRAIN], width) @ weights
        row = {
            "rank": rank,
            "pod_projection": _errors(decode(coef[TEST]), truth),
            "linear_rollout_exact_c0": _errors(decode(rollout(coef[TEST, 0])), truth),
            "kernel_width_box_sides": width,
            "c0_relative_error_validation": round(float(val_err), 4),
            "c0_relative_error_test": round(
                float(np.linalg.norm(c0_test - coef[TEST, 0]) / np.linalg.norm(coef[TEST, 0])), 4
            ),
            "linear_rollout_regressed_c0": _errors(decode(rollout(c0_test)), truth),
            "spectral_radius": round(float(np.abs(np.linalg.eigvals(step)).max()), 6),
            "float32_megabytes_modes_and_operator": round(
                4 * (modes.size + step.size + weights.size) / 1e6, 2
            ),
            "svd_seconds": round(svd_s, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
