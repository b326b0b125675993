"""The command line: simulate -> train -> assimilate on a tiny grid."""

from __future__ import annotations

import pytest
import xarray as xr

import xlevda
from xlevda.cli import build_parser, main
from xlevda.systems import observe


def test_simulate_train_assimilate(tmp_path, capsys):
    runs = tmp_path / "runs.nc"
    assert (
        main(
            [
                "simulate",
                "tsunami",
                "--runs",
                "4",
                "--grid",
                "12",
                "--frames",
                "4",
                "-q",
                "-o",
                str(runs),
            ]
        )
        == 0
    )
    ds = xr.open_dataset(runs)
    assert ds.eta.shape == (4, 4, 12, 12)
    model = tmp_path / "model.pt"
    assert (
        main(
            [
                "train",
                str(runs),
                "--params",
                "src_lat",
                "src_lon",
                "--epochs",
                "1",
                "--latent-dim",
                "3",
                "-q",
                "-o",
                str(model),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fit quality on 1 held-out run(s)" in out
    assert xlevda.load_surrogate(model).quality.summary() in out
    obs = observe.observe(ds.isel(run=0)[["eta"]], observe.GridStride(4), noise_ratio=0.1)
    obs.to_netcdf(tmp_path / "obs.nc")
    out = tmp_path / "an.nc"
    assert (
        main(
            [
                "assimilate",
                str(tmp_path / "obs.nc"),
                "--surrogate",
                str(model),
                "--members",
                "4",
                "--window",
                "2",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    an = xr.open_dataset(out)
    assert an.eta.sizes["member"] == 4 and an.eta.sizes["time"] == 4
    assert an.eta_obs_minus_background.dims == ("eta_obs",)  # departures written too
    assert (an.eta_obs_flag == 0).all() and an.eta_obs_time.dtype.kind == "M"
    assert "assimilated" in capsys.readouterr().out


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    runs = tmp_path / "runs.nc"
    main(
        [
            "simulate",
            "tsunami",
            "--runs",
            "2",
            "--grid",
            "8",
            "--frames",
            "3",
            "-q",
            "-o",
            str(runs),
        ]
    )
    code = main(["train", str(runs), "--params", "depth", "-q", "-o", str(tmp_path / "m.pt")])
    assert code == 2
    assert "parameter 'depth' is not a coordinate" in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("simulate", "train", "assimilate", "demo"):
        assert command in out


@pytest.mark.filterwarnings("ignore:the fitted linear latent step:UserWarning")
def test_train_linear_ldnet(tmp_path, capsys):
    """'--decoder linear' fits the closed-form linear LDNet and saves it with float16 parts."""
    runs = tmp_path / "runs.nc"
    sim = ["simulate", "tsunami", "--runs", "6", "--grid", "10", "--frames", "5", "-q"]
    assert main([*sim, "-o", str(runs)]) == 0
    model = tmp_path / "linear.pt"
    train = ["train", str(runs), "--params", "src_lat", "src_lon", "--decoder", "linear"]
    args = [*train, "--latent-dim", "9", "--cosine-terms", "6", "-q", "-o", str(model)]
    assert main(args) == 0
    out = capsys.readouterr().out
    fitted = xlevda.load_surrogate(model)
    # the quality report's table, as stored in the file
    assert fitted.quality.summary() in out
    assert "held-out run(s), whole trajectories of 5 frames" in out
    assert "spectral radius" in out and "eta" in out.split("all frames")[1]
    assert fitted.latent_dim == 9 and fitted.metadata["half"] == ["decoder.weight", "dynamics.A"]
    assert fitted.config.dynamics is not None and fitted.config.decoder.n_terms == 6


@pytest.mark.filterwarnings("ignore:the fitted latent step Jacobian:UserWarning")
def test_train_polynomial_ldnet(tmp_path, capsys):
    """'--decoder polynomial' fits the closed-form polynomial LDNet with the given terms."""
    runs = tmp_path / "runs.nc"
    sim = ["simulate", "tsunami", "--runs", "6", "--grid", "10", "--frames", "5", "-q"]
    assert main([*sim, "-o", str(runs)]) == 0
    model = tmp_path / "poly.pt"
    train = ["train", str(runs), "--params", "src_lat", "src_lon", "--decoder", "polynomial"]
    args = [*train, "--latent-dim", "6", "--cosine-terms", "6", "--quadratic-modes", "2"]
    assert main([*args, "--param-degree", "1", "-q", "-o", str(model)]) == 0
    out = capsys.readouterr().out
    fitted = xlevda.load_surrogate(model)
    assert fitted.quality.summary() in out and "latent step Jacobian" in out
    dyn = fitted.config.dynamics
    assert dyn.kind == "polynomial" and (dyn.param_degree, dyn.quadratic_modes) == (1, 2)
    assert fitted.metadata["half"] == ["decoder.weight"]


def test_kolmogorov_runs_train_on_periodic_x_y(tmp_path):
    runs = tmp_path / "kol.nc"
    args = ["simulate", "kolmogorov", "--runs", "3", "--grid", "14", "--frames", "3", "-q"]
    assert main([*args, "-o", str(runs)]) == 0
    ds = xr.open_dataset(runs)
    assert ds.vorticity.dims == ("run", "time", "y", "x") and ds.sizes["time"] == 3
    assert ds.Re.min() >= 500 and ds.Re.max() <= 1500
    model = tmp_path / "kol.pt"
    train = ["train", str(runs), "--params", "Re", "--latent-dim", "3", "--epochs", "1", "-q"]
    assert main([*train, "-o", str(model)]) == 0
    assert model.stat().st_size > 0
