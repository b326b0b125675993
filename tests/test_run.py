"""RunOptions: every field checked where it is declared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xlevda.errors import ConfigError
from xlevda.run import RunOptions, check_device


def test_numpy_integers_become_python_ints():
    run = RunOptions(members=np.int64(5), seed=np.uint32(7))
    assert (run.members, run.seed) == (5, 7)
    assert type(run.members) is int and type(run.seed) is int


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("tpu", r"device='tpu': expected one of \('cpu', 'cuda', 'mps', 'xpu'\)"),
        ("meta", r"device='meta': expected one of"),
        ("cpu ", r"device='cpu ': expected one of"),
        (0, r"device=0: expected one of"),
        (None, r"device=None: expected one of"),
    ],
)
def test_devices_that_hold_no_data_or_do_not_exist(device, match):
    with pytest.raises(ConfigError, match=match):
        RunOptions(device=device)


def test_a_cuda_device_must_exist(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    check_device("cuda")
    check_device("cuda:1")
    with pytest.raises(ConfigError, match=r"device='cuda:2': not available .*\(2 cuda device"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device='cuda': not available .*\(0 cuda device"):
        check_device("cuda")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": np.float32}, r"dtype=<class 'numpy.float32'>: expected 'float32' or"),
        ({"dtype": ["float32"]}, r"dtype=\['float32'\]: expected"),
        ({"member_dim": ""}, r"member_dim='': expected a non-empty name"),
        ({"member_dim": None}, r"member_dim=None: expected a non-empty name"),
        ({"members": 2.0}, r"members=2.0: expected an integer >= 2"),
    ],
)
def test_bad_run_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RunOptions(**kwargs)
