"""``xlevda assimilate``: --obs-coords, and the output options --spread-step and --no-latent."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import xarray as xr

from xlevda.cli import main

pytestmark = pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")

T0 = np.datetime64("2026-01-01T00:00", "ns")
_N = itertools.count()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_assimilate")
    model.save(folder / "m.pt")
    return folder


def _points(lat_name: str = "lat", lon_name: str = "lon") -> xr.Dataset:
    """Eta observed at three places and times, positions named ``lat_name``, ``lon_name``."""
    times = T0 + np.array([30, 70, 230]) * np.timedelta64(60, "s")
    return xr.Dataset(
        {"eta": ("obs", [0.1, 0.3, 0.2]), "eta_std": ("obs", [0.05, 0.05, 0.05])},
        coords={
            "time": ("obs", times),
            lat_name: ("obs", [41.0, 42.0, 43.0]),
            lon_name: ("obs", [-158.0, -157.0, -156.0]),
        },
    )


def _assimilate(files, obs, *extra) -> int:
    path = files / f"obs{next(_N)}.nc"  # a new name: the CLI leaves its input open
    obs.to_netcdf(path)
    args = ["assimilate", str(path), "--surrogate", str(files / "m.pt")]
    return main([*args, "--members", "4", "--window", "2", "-q", *extra])


@pytest.fixture(scope="module")
def reference(files) -> xr.Dataset:
    """The analysis of :func:`_points` written by default (lossless)."""
    assert _assimilate(files, _points(), "-o", str(files / "ref.nc")) == 0
    return xr.open_dataset(files / "ref.nc")


def test_obs_coords_names_the_observations_positions(files, reference, capsys):
    obs = _points("yy", "xx")
    assert _assimilate(files, obs, "-o", str(files / "none.nc")) == 2
    err = capsys.readouterr().err
    assert "no coordinate matches the surrogate's spatial coordinate 'lat'" in err
    assert not (files / "none.nc").exists()
    for coords in (["yy", "xx"], ["lat=yy", "lon=xx"]):
        out = files / f"{coords[0]}.nc"
        assert _assimilate(files, obs, "--obs-coords", *coords, "-o", str(out)) == 0
        back = xr.open_dataset(out)
        np.testing.assert_array_equal(back.eta_obs_lat.values, [41.0, 42.0, 43.0])
        xr.testing.assert_equal(back.eta, reference.eta)
    assert _assimilate(files, obs, "--obs-coords", "yy", "lon=xx", "-o", str(out)) == 2
    assert "--obs-coords yy lon=xx: expected the observations' coordinate names" in (
        capsys.readouterr().err
    )


def test_spread_step_and_no_latent(files, reference, capsys):
    out = files / "packed.nc"
    assert _assimilate(files, _points(), "--spread-step", "0.1", "--no-latent", "-o", str(out)) == 0
    back = xr.open_dataset(out)
    assert "latent_state" not in back
    assert back.eta.encoding["dtype"] in (np.int16, np.int32)
    assert "latent_state" in reference
    step = float(back.eta.encoding["scale_factor"])
    tol = step / 2 + 4 * np.finfo(np.float32).eps * float(np.abs(reference.eta).max())
    assert 0 < float(np.abs(back.eta - reference.eta).max()) <= tol
    for bad in ("0", "2", "nan"):
        assert _assimilate(files, _points(), "--spread-step", bad, "-o", str(out)) == 2
        assert "--spread-step must be a finite number in (0.0, 1.0]" in capsys.readouterr().err
