"""The CUDA path gives the CPU's results (issue 21, item 3); skipped without a CUDA device.

LEVDA draws every random number on the CPU and moves it (:func:`xlevda.core.rng.normal`),
so an analysis on CUDA solves the same problems as on the CPU: in float64 both reach the
same minima, and the decoded ensembles agree to the optimizer's tolerance.  LD-EnSF draws
on the run's device (its generator travels between windows), so its CUDA members are other
draws than the CPU's and are not compared here.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.conftest import make_runs
from xlevda import LEVDA, RunOptions
from xlevda.systems import observe

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

RTOL = 1e-6  # of the field's RMS: float64 minima found to LBFGSConfig's default tolerance


def _analysis(model, truth, device: str):
    obs = observe.observe(truth[["eta", "u"]], observe.GridStride(2), noise_ratio=0.05, seed=3)
    target = truth.drop_vars(list(truth.data_vars))
    run = RunOptions(members=8, seed=1, device=device, dtype="float64")
    return target.levda.assimilate(obs, model, LEVDA(window=3), run=run).compute()


def _close(a, b, what: str) -> None:
    scale = float(np.sqrt(np.mean(np.square(b)))) or 1.0
    err = float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) / scale
    assert err <= RTOL, f"{what}: CUDA and CPU differ by {err:.2e} of the RMS"


def test_levda_on_cuda_equals_the_cpu(model, truth):
    cpu = _analysis(model, truth, "cpu")
    cuda = _analysis(model, truth, "cuda")
    for name in ("eta", "u", "a", "b", "latent_state"):
        _close(cuda[name].values, cpu[name].values, name)


def test_predict_on_cuda_equals_the_cpu(model):
    params = {"a": np.array([-0.2, 0.3]), "b": np.array([0.7, 1.2])}
    where = make_runs(n_runs=1, n_frames=6).isel(run=0).reset_coords(drop=True)
    cpu = model.predict(params, where=where)
    on_cuda = copy.deepcopy(model).to("cuda")
    cuda = on_cuda.predict(params, where=where)
    for name in ("eta", "u"):
        _close(cuda[name].values, cpu[name].values, name)
