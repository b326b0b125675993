"""Lorenz-96 setting, twin data, core filter cycle and JSON helpers of ``l96_filters.py``.

Imported as a sibling module by ``l96_filters.py`` and ``l96_accessor.py``; xlevda and torch
are imported inside the functions, so the ``dapper`` step runs in an environment without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

N_VARS, FORCING, DT = 40, 8.0, 0.05
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "l96_filters.json"
DAPPER_PUBLISHED = {"ETKF": 0.18, "LETKF": 0.22}
MEMBERS = {"ETKF": 24, "LETKF": 7}
GC_SCALE = 2 * 1.82  # DAPPER's Gaspari-Cohn half-width is 1.82 loc_rad; support twice that


def twin(cycles: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth ``(cycles + 1, N)`` on the attractor and observations ``(cycles, N)`` of its
    states ``1..cycles`` with unit Gaussian errors."""
    from xlevda.systems.lorenz96 import simulate

    truth = simulate(FORCING, cycles, seed=seed, spinup=2000).x.values[0]
    obs = truth[1:] + np.random.default_rng(seed + 1).standard_normal(truth[1:].shape)
    return truth, obs


def ring_distances() -> np.ndarray:
    """Periodic distances (N, N) between the sites and the observations (one per site)."""
    d = np.abs(np.arange(N_VARS)[:, None] - np.arange(N_VARS)[None, :]).astype(float)
    return np.minimum(d, N_VARS - d)


def initial_ensemble(truth0: np.ndarray, members: int, seed: int) -> np.ndarray:
    """Truth at time 0 plus N(0, I) draws (K, N), from a torch generator seeded ``seed``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    draws = torch.randn(members, N_VARS, generator=gen, dtype=torch.float64)
    return (torch.as_tensor(truth0) + draws).numpy()


class CoreRun(NamedTuple):
    """Analysis ensemble mean and standard deviation (``K - 1`` normalization), each (T, N)."""

    analysis_mean: Any
    analysis_std: Any


def core_cycle(truth, obs, members, inflation, radius, seed) -> tuple[CoreRun, float]:
    """The core functions cycled over all observations: ``(CoreRun, wall seconds)``.

    Cycle ``k`` runs the ensemble one RK4 step forward and analyses it with
    ``letkf_analysis`` against ``obs[k]``; a forecast or analysis with NaN or infinite values
    raises ``VariableError`` (a diverged filter).
    """
    import torch

    from xlevda.core.letkf import letkf_analysis
    from xlevda.errors import VariableError
    from xlevda.systems.lorenz96 import rk4_step

    obs_t = torch.as_tensor(obs)
    ensemble = torch.as_tensor(initial_ensemble(truth[0], members, seed))
    dist = None if radius is None else torch.as_tensor(ring_distances())
    std = torch.ones(N_VARS, dtype=torch.float64)
    means, stds = [], []
    start = time.perf_counter()
    for k in range(len(obs)):
        forecast = rk4_step(ensemble, FORCING, DT)
        if not torch.isfinite(forecast).all():
            raise VariableError(f"the forecast has NaN or infinite values at cycle {k}: diverged")
        ensemble = letkf_analysis(
            forecast, obs_t[k], forecast, std, inflation=inflation, radius=radius, distances=dist
        )
        if not torch.isfinite(ensemble).all():
            raise VariableError(f"the analysis has NaN or infinite values at cycle {k}: diverged")
        spread, mean = torch.std_mean(ensemble, dim=-2)
        means.append(mean)
        stds.append(spread)
    wall = time.perf_counter() - start
    return CoreRun(torch.stack(means), torch.stack(stds)), wall


def standard_error(series: np.ndarray, block: int = 100) -> float:
    """Standard error of the time mean from the spread of block means (autocorrelated)."""
    blocks = series[: len(series) // block * block].reshape(-1, block).mean(1)
    return float(blocks.std(ddof=1) / np.sqrt(len(blocks)))


def to_json(report: dict) -> str:
    """JSON text with non-finite numbers (a diverged run) written as null."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return None if isinstance(x, float) and not np.isfinite(x) else x

    return json.dumps(clean(report), indent=2, allow_nan=False) + "\n"


def checksum(*arrays: np.ndarray) -> str:
    """A short SHA-256 of the arrays as float64: identifies the truth and observations."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def machine() -> dict:
    """The machine and thread setting, for the JSON record."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": "1 (torch.set_num_threads(1), OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')})",
        "python": platform.python_version(),
        "note": "2-core CPU shared with other jobs; wall times are indicative",
    }
