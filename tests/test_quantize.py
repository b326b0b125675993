"""xlevda.quantize through xlevda.write: fields packed to steps of their ensemble spread.

The bounds tested are those :mod:`xlevda.quantize` states: every written value within half
a step (plus the decoding's float rounding) of the analysis, the ensemble spread at each
point within ``sqrt(K / (K - 1))`` half-steps, the RMS spread within
``fraction * sqrt(K / (K - 1)) / 2`` of itself.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from xlevda.errors import ConfigError
from xlevda.methods import LEVDA
from xlevda.quantize import spread_packing
from xlevda.run import RunOptions
from xlevda.write import write

K = 8
FRACTION = 0.1


@pytest.fixture(scope="module")
def analysis(model, truth):
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    obs = obs.assign(eta_std=xr.full_like(obs.eta, 0.05))
    run = RunOptions(members=K, dtype="float32", seed=5)
    return truth.drop_vars(["eta", "u"]).levda.assimilate(obs, model, LEVDA(window=2), run=run)


def _rms_spread(x: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(x.astype(np.float64).std(axis=1, ddof=1) ** 2)))


def _check_bounds(exact: np.ndarray, back: np.ndarray, step: float, fraction: float) -> None:
    """Values, pointwise spreads and the RMS spread of ``back`` within the stated bounds."""
    exact, back = exact.astype(np.float64), back.astype(np.float64)
    rounding = 4 * np.finfo(np.float32).eps * np.nanmax(np.abs(exact))
    err = np.abs(back - exact)
    assert np.nanmax(err) <= step / 2 + rounding
    assert np.nanmax(err) > step / 4  # rounded to the step, not finer
    inflate = np.sqrt(K / (K - 1))
    spread, spread_back = exact.std(axis=1, ddof=1), back.std(axis=1, ddof=1)
    assert np.nanmax(np.abs(spread_back - spread)) <= inflate * (step / 2 + rounding)
    rms, rms_back = _rms_spread(exact), _rms_spread(back)
    assert abs(rms_back / rms - 1) <= fraction * inflate / 2 + rounding / rms


@pytest.mark.parametrize("name", ["a.nc", "a.zarr"])
def test_fields_are_stored_within_half_a_step_of_a_fraction_of_their_spread(
    analysis, tmp_path, name
):
    write(analysis, tmp_path / name, spread_step=FRACTION)
    back = xr.open_dataset(tmp_path / name, engine="zarr" if name.endswith("zarr") else None)
    exact = analysis.compute()
    for var in ("eta", "u"):
        step = float(back[var].encoding["scale_factor"])
        np.testing.assert_allclose(step, FRACTION * _rms_spread(exact[var].values), rtol=1e-6)
        assert back[var].encoding["dtype"] in (np.int16, np.int32)
        assert "0.1 x the RMS ensemble spread" in back[var].attrs["comment"]
        _check_bounds(exact[var].values, back[var].values, step, FRACTION)
    for var in ("latent_state", "a", "b"):  # not fields on (time, member, space): as they are
        np.testing.assert_array_equal(back[var].values, exact[var].values)


def test_zarr_and_netcdf_hold_the_same_values(analysis, tmp_path):
    write(analysis, tmp_path / "a.nc", spread_step=FRACTION)
    write(analysis, tmp_path / "a.zarr", spread_step=FRACTION)
    nc, zarr = xr.open_dataset(tmp_path / "a.nc"), xr.open_zarr(tmp_path / "a.zarr")
    for var in nc.data_vars:  # zarr decodes packed fields to float64 (JSON attributes)
        if nc[var].dtype.kind not in "fiu":
            np.testing.assert_array_equal(zarr[var].values, nc[var].values)
            continue
        tol = 2 * np.finfo(np.float32).eps * float(np.abs(nc[var]).max())
        np.testing.assert_allclose(zarr[var].values, nc[var].values, rtol=0, atol=tol)


def _ensemble(values: np.ndarray) -> xr.Dataset:
    """``values`` (time, member, x) as a field ``h`` with units."""
    return xr.Dataset({"h": (("time", "member", "x"), values, {"units": "m"})})


def test_a_wide_range_is_packed_as_int32_and_nan_stays_nan(tmp_path):
    rng = np.random.default_rng(0)
    mean = np.linspace(-1000.0, 5000.0, 40)
    values = (mean + 0.01 * rng.standard_normal((3, K, 40))).astype(np.float32)
    values[1, 2, 5] = np.nan
    write(_ensemble(values), tmp_path / "w.nc", spread_step=0.5)
    back = xr.open_dataset(tmp_path / "w.nc").h
    assert back.encoding["dtype"] == np.int32  # 6000 m / 0.005 m: more steps than int16
    assert back.encoding["scale_factor"].dtype == np.float64  # int32 unpacked as double
    assert np.isnan(back.values[1, 2, 5]) and np.isnan(back.values).sum() == 1
    step = float(back.encoding["scale_factor"])
    _check_bounds(values, back.values, step, 0.5)


def test_a_field_without_spread_is_written_as_it_is_with_a_warning(tmp_path):
    values = np.broadcast_to(np.linspace(0.0, 1.0, 6), (2, K, 6)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"spread_step: 'h' written as it is, not packed"):
        write(_ensemble(values), tmp_path / "z.nc", spread_step=0.1)
    back = xr.open_dataset(tmp_path / "z.nc").h
    assert back.dtype == np.float32 and "scale_factor" not in back.encoding
    np.testing.assert_array_equal(back.values, values)


def test_a_mapping_packs_only_the_variables_it_names(analysis):
    ds, enc = spread_packing(analysis, {"u": 0.25, "latent_state": 0.5})
    assert sorted(enc) == ["latent_state", "u"]
    assert ds.u.dtype in (np.int16, np.int32) and analysis.u.dtype == np.float32  # a copy
    assert ds.u.chunks == analysis.u.chunks  # still lazy: written chunk by chunk
    assert ds.eta.dtype == np.float32
    assert ds.a.dtype == analysis.a.dtype


def test_bad_spread_steps_are_refused(analysis, tmp_path):
    for value, match in [
        (0.0, r"spread_step\['eta'\] must be a finite number in \(0.0, 1.0\], got 0.0"),
        (1.5, r"spread_step\['eta'\] must be a finite number in \(0.0, 1.0\], got 1.5"),
        (True, r"spread_step\['eta'\] must be a finite number"),
        ("0.1", r"spread_step\['eta'\] must be a finite number"),
        ({"nope": 0.1}, r"spread_step names \['nope'\], not data variables"),
        ({"eta_obs_value": 0.1}, r"spread_step\['eta_obs_value'\]: 'eta_obs_value' has dims"),
        ({"window_n_iter": 0.1}, r"'window_n_iter' is not a float variable"),
    ]:
        with pytest.raises(ConfigError, match=match):
            write(analysis, tmp_path / "x.nc", spread_step=value)
    with pytest.raises(ConfigError, match=r"significant_digits and spread_step both apply to"):
        write(analysis, tmp_path / "x.nc", spread_step=0.1, significant_digits=3)
    no_members = analysis.isel(member=0)
    with pytest.raises(ConfigError, match=r"spread_step=0.1: no field to pack"):
        write(no_members, tmp_path / "x.nc", spread_step=0.1)
    write(analysis, tmp_path / "x.nc", spread_step={"eta": 0.1}, significant_digits={"u": 3})
