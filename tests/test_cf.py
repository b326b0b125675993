"""Written analyses pass the IOOS compliance checker's CF-1.11 test with 0 errors."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import xarray as xr

from xlevda.methods import LETKF, LEVDA, Inflation, Localization
from xlevda.run import RunOptions
from xlevda.systems import observe, tsunami
from xlevda.systems.tsunami_model import TsunamiModel
from xlevda.write import write

runner = pytest.importorskip(
    "compliance_checker.runner", reason="compliance-checker is not installed (test extra)"
)

RUN = RunOptions(members=4, dtype="float64")


def _obs(truth, std=0.05):
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    obs = obs.assign(eta_std=xr.full_like(obs.eta, std))
    obs = obs.stack(obs=("time", "lat", "lon")).reset_index("obs")
    return obs.drop_vars([c for c in ("a", "b", "run") if c in obs.coords])


def cf_errors(path) -> list[str]:
    """The messages of the checker's high-priority (error) results."""
    runner.CheckSuite.load_all_available_checkers()
    report = path.with_suffix(".json")
    runner.ComplianceChecker.run_checker(
        str(path), ["cf:1.11"], 0, "normal", output_filename=str(report), output_format="json"
    )
    results = json.loads(report.read_text())["cf:1.11"]["high_priorities"]
    return [msg for r in results for msg in r["msgs"]]


def _letkf_analysis() -> xr.Dataset:
    """An LETKF analysis of a small tsunami with the simulator as the model."""
    cfg = tsunami.TsunamiConfig(nx=8, ny=8, n_frames=4)
    truth = tsunami.simulate(**tsunami.sample_sources(1, seed=3, config=cfg), config=cfg)
    truth = truth.isel(run=0)
    obs = observe.observe(truth, observe.GridStride(3), noise_ratio=0.1, seed=0)
    where = truth.drop_vars(["u", "v", "eta", "run"])
    method = LETKF(Inflation(1.1), Localization(250.0))
    return where.levda.assimilate(obs, TsunamiModel(cfg), method, run=RunOptions(members=6))


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
@pytest.mark.parametrize("kind", ["levda", "letkf", "case", "quantized", "packed"])
def test_written_analyses_have_no_cf_errors(model, truth, tmp_path, kind):
    target = truth.drop_vars(["eta", "u"])
    obs = _obs(truth)
    if kind == "case":
        obs = xr.concat([obs, _obs(truth, 0.1)], dim="case").assign_coords(case=["a", "b"])
    if kind == "letkf":
        analysis = _letkf_analysis()
    else:
        analysis = target.levda.assimilate(obs, model, LEVDA(window=2), run=RUN)
    precision = {"quantized": {"significant_digits": 3}, "packed": {"spread_step": 0.1}}
    path = write(analysis, tmp_path / f"{kind}.nc", **precision.get(kind, {}))
    assert cf_errors(path) == []


@pytest.mark.skipif(shutil.which("cdo") is None, reason="CDO is not installed")
@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
@pytest.mark.parametrize("spread_step", [None, 0.1])
def test_cdo_reads_the_file_without_warnings(model, truth, tmp_path, spread_step):
    analysis = truth.drop_vars(["eta", "u"]).levda.assimilate(
        _obs(truth), model, LEVDA(window=2), run=RUN
    )
    path = write(analysis, tmp_path / "a.nc", spread_step=spread_step)
    out = subprocess.run(["cdo", "sinfon", str(path)], capture_output=True, text=True, check=True)
    assert "Warning" not in out.stderr and "Unsupported" not in out.stderr, out.stderr
    assert "eta" in out.stdout
