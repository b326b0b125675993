"""The command line's options: --version, Python's training defaults, the default target,
--errors, --variables, --outside, output format by extension, quiet progress."""

from __future__ import annotations

import itertools

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from xlevda._version import VERSION
from xlevda.cli import build_parser, default_target, main, train_config
from xlevda.progress import progress
from xlevda.surrogates.config import LDNetConfig
from xlevda.surrogates.decoder_configs import CosineDecoderConfig

pytestmark = pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")

T0 = np.datetime64("2026-01-01T00:00", "ns")


def _points(minutes, lat, lon, std=True) -> xr.Dataset:
    """Point observations of eta and u (u without an error) at ``minutes`` after T0."""
    n = len(minutes)
    times = T0 + np.asarray(minutes) * np.timedelta64(60, "s")
    ds = xr.Dataset(
        {
            "eta": ("obs", np.linspace(0.1, 0.5, n)),
            "u": ("obs", np.linspace(0.0, 0.2, n)),
        },
        coords={"time": ("obs", times), "lat": ("obs", lat), "lon": ("obs", lon)},
    )
    return ds.assign(eta_std=("obs", np.full(n, 0.05))) if std else ds


IRREGULAR = _points([30, 70, 230], [41.0, 42.0, 43.0], [-158.0, -157.0, -156.0])


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model.save(folder / "m.pt")
    return folder


_N = itertools.count()


def _assimilate(files, obs, *extra):
    path = files / f"obs{next(_N)}.nc"  # a new name: the CLI leaves its input open
    obs.to_netcdf(path)
    args = ["assimilate", str(path), "--surrogate", str(files / "m.pt")]
    return main([*args, "--members", "4", "--window", "2", *extra])


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"xlevda {VERSION}"


def test_training_defaults_are_pythons():
    args = build_parser().parse_args(["train", "runs.nc", "--params", "a", "-o", "m.pt"])
    assert train_config(args) == LDNetConfig()
    linear = build_parser().parse_args(
        ["train", "runs.nc", "--params", "a", "--decoder", "linear", "-o", "m.pt"]
    )
    assert train_config(linear).decoder == CosineDecoderConfig()


def test_default_target_covers_irregular_observations(model, files):
    target = default_target(model, IRREGULAR)
    hours = (target.time.values - T0) / np.timedelta64(1, "h")
    assert hours.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # 00:30 .. 03:50 covered
    assert target.lat.attrs["standard_name"] == "latitude"
    assert _assimilate(files, IRREGULAR, "--variables", "eta", "-o", str(files / "a.zarr")) == 0
    an = xr.open_zarr(files / "a.zarr")
    assert an.time.values[0] <= IRREGULAR.time.values.min()
    assert an.time.values[-1] >= IRREGULAR.time.values.max()
    assert an.attrs["n_observations_used"] == 3


def test_variables_and_errors(files, capsys):
    obs = _points([0, 60, 120], [41.0, 42.0, 43.0], [-158.0, -157.0, -156.0], std=False)
    assert _assimilate(files, obs, "-o", str(files / "e.nc")) == 2
    assert "no observation error for 'eta'" in capsys.readouterr().err
    out = str(files / "e.nc")
    assert _assimilate(files, obs, "--errors", "eta=0.05", "u=0.1", "-o", out) == 0
    assert xr.open_dataset(out).attrs["n_observations_used"] == 6
    assert _assimilate(files, obs, "--variables", "u", "--errors", "u=0.1", "-o", out) == 0
    assert xr.open_dataset(out).attrs["n_observations_used"] == 3
    with pytest.raises(SystemExit) as stop:
        _assimilate(files, obs, "--errors", "eta:0.1", "-o", out)
    assert stop.value.code == 2
    assert "expected VAR=STD such as eta=0.01, got 'eta:0.1'" in capsys.readouterr().err


def test_outside(files, capsys):
    obs = _points([0, 60, 120], [41.0, 42.0, 60.0], [-158.0, -157.0, -156.0])
    out = str(files / "o.nc")
    assert _assimilate(files, obs, "--variables", "eta", "-o", out) == 2
    assert "outside" in capsys.readouterr().err
    assert _assimilate(files, obs, "--variables", "eta", "--outside", "drop", "-o", out) == 0
    an = xr.open_dataset(out)
    assert (an.attrs["n_observations_used"], an.attrs["n_observations_dropped"]) == (2, 1)


def test_gross_error(files, capsys):
    obs = _points([0, 60, 120], [41.0, 42.0, 43.0], [-158.0, -157.0, -156.0])
    obs["eta"][1] = 1e4  # 2e5 error standard deviations
    out = str(files / "g.nc")
    with pytest.warns(UserWarning, match="GrossErrorCheck"):
        code = _assimilate(files, obs, "--variables", "eta", "--gross-error", "1000", "-o", out)
    assert code == 0
    an = xr.open_dataset(out)
    assert an.eta_obs_flag.values.tolist() == [0, 1, 0]
    assert (an.attrs["n_observations_used"], an.attrs["n_observations_rejected"]) == (2, 1)
    assert _assimilate(files, obs, "--gross-error", "0", "-o", out) == 2
    assert "GrossErrorCheck.threshold must be a finite number" in capsys.readouterr().err


def test_unknown_output_extension_fails_before_the_work(files, capsys):
    assert _assimilate(files, IRREGULAR, "--variables", "eta", "-o", str(files / "a.h5")) == 2
    assert "path must end in .zarr or one of .nc" in capsys.readouterr().err
    assert not (files / "a.h5").exists()


def test_progress_bars_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    args = ["simulate", "tsunami", "--runs", "2", "--grid", "8", "--frames", "3"]
    assert main([*args, "-o", str(tmp_path / "r.zarr")]) == 0  # no -q: stderr is no terminal
    assert "%|" not in capsys.readouterr().err
    assert xr.open_zarr(tmp_path / "r.zarr").eta.shape == (2, 3, 8, 8)
    with progress(enabled=True, desc="test"):
        dsa.ones(4, chunks=1).sum().compute()
    assert "test: 100%" in capsys.readouterr().err


def test_past_horizon(files, capsys):
    """Observations past the surrogate's last training frame (5 h): an error unless forecasts
    are allowed."""
    late = _points([30, 70, 330], [41.0, 42.0, 43.0], [-158.0, -157.0, -156.0])
    out = str(files / "h.nc")
    assert _assimilate(files, late, "--variables", "eta", "-o", out) == 2
    assert "past_horizon='forecast'" in capsys.readouterr().err
    forecast = ("--variables", "eta", "--past-horizon", "forecast", "-o", out)
    with pytest.warns(UserWarning, match="past the surrogate's trained horizon"):
        assert _assimilate(files, late, *forecast) == 0
    assert xr.open_dataset(out).attrs["n_target_times_past_horizon"] >= 1
