"""xlevda.write: all or nothing, format by extension, CF-clean compressed files, byte-identity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xlevda
from xlevda.errors import ConfigError
from xlevda.methods import LEVDA
from xlevda.quantize import bitround
from xlevda.run import RunOptions
from xlevda.write import output_format, time_encoding, write

RUN = RunOptions(members=4, dtype="float64", seed=3)


def _obs(truth):
    obs = truth[["eta"]].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    return obs.assign(eta_std=xr.full_like(obs.eta, 0.05))


@pytest.fixture(scope="module")
def analysis(model, truth):
    return truth.drop_vars(["eta", "u"]).levda.assimilate(
        _obs(truth), model, LEVDA(window=2), run=RUN
    )


def _failing(n_ok: int) -> xr.Dataset:
    """A lazy field whose block ``n_ok`` raises when computed."""

    def block(x, block_info=None):
        if block_info[None]["chunk-location"][0] >= n_ok:
            raise RuntimeError("injected failure")
        return x + 1.0

    data = dsa.zeros((6, 50), chunks=(1, 50)).map_blocks(block, dtype=float)
    return xr.Dataset({"h": (("t", "x"), data)})


@pytest.mark.parametrize("name", ["out.nc", "out.zarr"])
def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path, name):
    final = tmp_path / name
    with pytest.raises(RuntimeError, match="injected failure"):
        write(_failing(3), final)
    assert os.listdir(tmp_path) == []
    write(_failing(6), final)  # a complete write
    before = xr.open_dataset(final, engine="zarr" if name.endswith("zarr") else None).h.values
    with pytest.raises(RuntimeError, match="injected failure"):
        write(_failing(3), final)
    assert os.listdir(tmp_path) == [name]
    engine = "zarr" if name.endswith("zarr") else None
    np.testing.assert_array_equal(xr.open_dataset(final, engine=engine).h.values, before)


_SLOW_WRITER = """
import sys, time
import dask.array as dsa, xarray as xr
from xlevda.write import write

def block(x):
    time.sleep(0.2)
    return x + 1.0

data = dsa.zeros((200, 100), chunks=(1, 100)).map_blocks(block, dtype=float)
write(xr.Dataset({"h": (("t", "x"), data)}), sys.argv[1])
"""


@pytest.mark.parametrize("name", ["killed.nc", "killed.zarr"])
def test_a_write_killed_mid_way_leaves_no_file_under_the_final_name(tmp_path, name):
    final = tmp_path / name
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(final)])
    try:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(f".{name}.tmp-") for p in tmp_path.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "writer never started"
            time.sleep(0.05)
        time.sleep(0.5)  # some blocks written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not final.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{name}.tmp-{proc.pid}-")


def test_format_follows_the_extension(analysis, tmp_path):
    assert output_format("a.NC") == "netcdf"
    with pytest.raises(ConfigError, match=r"path must end in .zarr or one of .nc, .*got 'a.h5'"):
        write(analysis, "a.h5")
    write(analysis, tmp_path / "a.zarr")
    back = xr.open_zarr(tmp_path / "a.zarr")
    xr.testing.assert_allclose(back.eta, analysis.eta.compute(), rtol=0, atol=0)
    assert back.eta.encoding["chunks"] == tuple(c[0] for c in analysis.eta.chunks)


def test_netcdf_is_cf_clean_compressed_and_chunked_like_dask(analysis, tmp_path):
    path = write(analysis, tmp_path / "a.nc")
    raw = xr.open_dataset(path, decode_times=False)
    assert raw.time.attrs["units"] == "hours since 2026-01-01"
    assert raw.time.dtype == np.int64
    for name in raw.coords:
        assert "_FillValue" not in raw[name].attrs and "_FillValue" not in raw[name].encoding
    for name, var in raw.variables.items():
        assert "long_name" in var.attrs or "standard_name" in var.attrs, name
    assert raw.member.attrs["units"] == "1" and raw.window.attrs["units"] == "1"
    enc = raw.eta.encoding
    assert enc["zlib"] and enc["shuffle"] and enc["complevel"] == 4
    assert enc["chunksizes"] == tuple(c[0] for c in analysis.eta.chunks)
    back = xr.open_dataset(path)
    np.testing.assert_array_equal(back.time.values, analysis.time.values)
    xr.testing.assert_allclose(back.eta, analysis.eta.compute(), rtol=0, atol=0)


def test_plain_to_netcdf_carries_the_encodings(analysis, tmp_path):
    analysis.to_netcdf(tmp_path / "plain.nc")
    raw = xr.open_dataset(tmp_path / "plain.nc", decode_times=False)
    assert raw.time.attrs["units"] == "hours since 2026-01-01"
    assert "_FillValue" not in raw.lat.attrs and raw.eta.encoding["zlib"]


def test_latent_trajectory_can_be_left_out(analysis, tmp_path):
    write(analysis, tmp_path / "a.nc", latent=False)
    assert "latent_state" not in xr.open_dataset(tmp_path / "a.nc")
    assert "latent_state" in analysis


def test_quantization_keeps_the_significant_digits(analysis, tmp_path):
    write(analysis, tmp_path / "q.nc", significant_digits=3)
    back = xr.open_dataset(tmp_path / "q.nc")
    exact = analysis.eta.values
    nsb = back.eta.attrs["quantization_nsb"]
    assert nsb == 10 and back.eta.attrs["quantization"] == "quantization_info"
    assert back.quantization_info.attrs["algorithm"] == "bitround"
    err = np.abs(back.eta.values - exact)
    assert (err <= 2.0 ** -(nsb + 1) * np.abs(exact)).all()
    assert (err <= 0.5e-3 * np.abs(exact)).all()  # half a unit of the third digit
    assert err.max() > 0  # rounded: not a copy
    np.testing.assert_array_equal(back.a.values, analysis.a.values)  # parameters untouched
    np.testing.assert_array_equal(back.latent_state.values, analysis.latent_state.values)
    with pytest.raises(ConfigError, match=r"significant_digits names \['nope'\]"):
        write(analysis, tmp_path / "x.nc", significant_digits={"nope": 2})


def test_bitround_rounds_to_nearest_within_half_an_ulp_of_the_kept_bits():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(10_000) * 10.0 ** rng.integers(-5, 5, 10_000)).astype(np.float32)
    for keep in (1, 7, 16):
        q = bitround(x, keep)
        assert (np.abs(q - x) <= 2.0 ** -(keep + 1) * np.abs(x)).all()
        mant = q.view(np.uint32) & np.uint32((1 << 23) - 1)
        assert not (mant & np.uint32((1 << (23 - keep)) - 1)).any()


def test_sub_second_times_are_stored_as_exact_seconds(tmp_path):
    t0 = np.datetime64("2026-01-01T00:00:00", "ns")
    times = t0 + np.arange(51) * np.timedelta64(851401142419, "ns")
    enc, seconds = time_encoding(times)
    assert enc["units"] == "seconds since 2026-01-01 00:00:00" and seconds is not None
    ds = xr.Dataset({"h": ("time", np.arange(51.0))}, coords={"time": times})
    write(ds, tmp_path / "t.nc")
    np.testing.assert_array_equal(xr.open_dataset(tmp_path / "t.nc").time.values, times)
    write(ds, tmp_path / "t.zarr")
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "t.zarr").time.values, times)
    raw = xr.open_dataset(tmp_path / "t.nc", decode_times=False)
    assert raw.time.attrs["units"] == "seconds since 2026-01-01 00:00:00"


def test_identical_seeds_give_byte_identical_files(model, truth, analysis, tmp_path):
    again = truth.drop_vars(["eta", "u"]).levda.assimilate(
        _obs(truth), model, LEVDA(window=2), run=RUN
    )
    for name in ("a.nc", "b.nc"):
        time.sleep(1.1 if name == "b.nc" else 0)  # any clock in the file would differ
        write(analysis if name == "a.nc" else again, tmp_path / name, reproducible=True)
    assert (tmp_path / "a.nc").read_bytes() == (tmp_path / "b.nc").read_bytes()
    write(analysis, tmp_path / "a.zarr", reproducible=True, history="fixed")
    write(again, tmp_path / "b.zarr", reproducible=True, history="fixed")
    files = sorted(p.relative_to(tmp_path / "a.zarr") for p in (tmp_path / "a.zarr").rglob("*"))
    assert files == sorted(
        p.relative_to(tmp_path / "b.zarr") for p in (tmp_path / "b.zarr").rglob("*")
    )
    for f in files:
        a, b = tmp_path / "a.zarr" / f, tmp_path / "b.zarr" / f
        assert a.is_dir() or a.read_bytes() == b.read_bytes(), f
    assert xr.open_dataset(tmp_path / "a.nc").attrs["history"] == "xlevda.assimilate"
    assert xr.open_zarr(tmp_path / "a.zarr").attrs["history"] == "fixed"
    assert analysis.attrs["history"].endswith("+00:00 xlevda.assimilate")  # caller's unchanged


def test_the_callers_dataset_is_unchanged(analysis, tmp_path):
    before = {k: (dict(v.encoding), dict(v.attrs)) for k, v in analysis.variables.items()}
    attrs = dict(analysis.attrs)
    write(analysis, tmp_path / "a.nc", latent=False, significant_digits=2, history="h")
    write(analysis, tmp_path / "a.zarr", reproducible=True)
    after = {k: (dict(v.encoding), dict(v.attrs)) for k, v in analysis.variables.items()}
    assert after.keys() == before.keys() and analysis.attrs == attrs
    for k, (enc, att) in before.items():
        assert after[k][0] == enc and after[k][1].keys() == att.keys(), k


def test_bad_options_are_refused(analysis, tmp_path):
    for kwargs, match in [
        ({"latent": "no"}, r"latent must be True or False, got 'no'"),
        ({"compression": 10}, r"compression"),
        ({"history": 3}, r"history must be a string or None, got 3"),
        ({"reproducible": 1}, r"reproducible must be True or False, got 1"),
        ({"significant_digits": 0}, r"significant_digits\['eta'\]"),
    ]:
        with pytest.raises(ConfigError, match=match):
            write(analysis, tmp_path / "x.nc", **kwargs)
    with pytest.raises(ConfigError, match=r"analysis must be an xarray Dataset, got DataArray"):
        write(analysis.eta, tmp_path / "x.nc")
    assert os.listdir(tmp_path) == []
    assert xlevda.write is write
