"""The demo's twin-experiment plumbing (the full demo runs in `xlevda demo`, not in tests)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from xlevda import load_pretrained
from xlevda.demo import SYSTEMS, quality_lines, run_demo, training_config, twin_experiment
from xlevda.errors import ConfigError
from xlevda.surrogates.fitreport import FitReport
from xlevda.systems import kolmogorov, sphere_config


def test_truth_uses_the_recordedtraining_config():
    cfg = kolmogorov.KolmogorovConfig(nx=20, ny=20, n_frames=7, burn_in=3)
    ds = kolmogorov.simulate([800.0], config=cfg, progress=False)
    model = SimpleNamespace(schema=SimpleNamespace(attrs={"config": ds.attrs["config"]}))
    assert training_config(SYSTEMS["kolmogorov"], model) == cfg


def test_nested_settings_must_be_the_defaults():
    cfg = sphere_config.SphereConfig(nlat=32, n_frames=3)
    initial = json.loads(json.dumps(dataclasses.asdict(cfg.initial)))
    text = json.dumps({"nlat": 32, "n_frames": 3, "initial": initial, "h_f0_range": [1, 2]})
    model = SimpleNamespace(schema=SimpleNamespace(attrs={"config": text}))
    got = training_config(SYSTEMS["sphere"], model)
    assert (got.nlat, got.n_frames, got.initial, got.h_f0_range) == (32, 3, cfg.initial, (1, 2))
    other = json.dumps({"nlat": 32, "initial": {**initial, "max_wind": 1.0}})
    model = SimpleNamespace(schema=SimpleNamespace(attrs={"config": other}))
    with pytest.raises(ConfigError, match=r"trained with initial=.* differs from the default"):
        training_config(SYSTEMS["sphere"], model)


def test_unknown_system():
    with pytest.raises(ConfigError, match=r"unknown demo system 'ocean': expected one of"):
        run_demo(system="ocean")
    with pytest.raises(ConfigError, match=r"unknown demo system 'ocean'"):
        twin_experiment("ocean")


def test_twin_experiment_checks_the_surrogate():
    with pytest.raises(
        ConfigError, match=r"surrogate=dict: the tsunami twin needs an xlevda.LDNet"
    ):
        twin_experiment("tsunami", surrogate={})
    with pytest.raises(ConfigError, match=r"observes \['u', 'v', 'eta'\]: \['eta'\] missing"):
        twin_experiment("tsunami", surrogate=load_pretrained("kolmogorov"))


def test_quality_lines_one_per_variable_or_one_saying_there_is_none():
    assert quality_lines(load_pretrained("kolmogorov").quality) == [
        "surrogate quality: no quality report stored with this surrogate"
    ]
    shipped = quality_lines(load_pretrained("tsunami").quality)
    assert [line.split(":")[0] for line in shipped] == [f"surrogate {v}" for v in ("u", "v", "eta")]
    report = FitReport(("u", "v"), 3, ((0.1, 0.2, 0.3), (0.4, 0.5, 0.9)), (0.2, 0.6), (2,), 1.0)
    lines = quality_lines(report)
    assert len(lines) == 2
    assert lines[1] == (
        "surrogate v: held-out relative RMSE 0.6000 (per frame: mean 0.6000, worst 0.9000)"
    )
    none = FitReport(("u",), 3, None, None, (), 1.0, note="no held-out runs (fraction 0)")
    assert quality_lines(none) == ["surrogate quality: no held-out runs (fraction 0)"]
