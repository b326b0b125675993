"""Write an analysis to NetCDF or zarr: CF-clean, compressed, never half-written.

:func:`write` is what ``xlevda assimilate`` and ``xlevda demo`` write with, and what a
user calls instead of ``Dataset.to_netcdf`` / ``to_zarr``: the format follows the
extension (``.zarr`` a zarr store, ``.nc``/``.nc4``/``.netcdf``/``.cdf`` NetCDF-4), the
file is written under a temporary name and renamed when complete (a killed or failed
write leaves nothing under the final name), the fields are compressed (zlib with
shuffle in NetCDF, Blosc-zstd with shuffle in zarr) in on-disk chunks equal to the
dask chunks, optionally stored to a precision (:mod:`xlevda.quantize`: steps of a
fraction of each field's ensemble spread as CF packed integers, or a number of
significant digits as CF-1.11 "bitround" quantization) and the latent trajectory
optionally left out.  Lossless unless a precision is asked for.
:func:`cf_encoding` gives the encodings alone (time in CDO-readable units, no
``_FillValue`` on coordinates, compression): :func:`xlevda.assimilate` attaches them to
its output, so a plain ``to_netcdf`` also writes a CF-clean, compressed file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xlevda.atomic import replace_when_done
from xlevda.errors import ConfigError
from xlevda.obs_output import observation_coords
from xlevda.quantize import reduced_precision
from xlevda.validate import check_int

__all__ = ["NETCDF_SUFFIXES", "cf_encoding", "output_format", "time_encoding", "write"]

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")
"""Extensions written as NetCDF-4 (``.zarr`` is written as a zarr store)."""

_UNITS = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
"""CF time units CDO reads, coarsest first, with their length in seconds."""


def output_format(path: str | os.PathLike[str]) -> str:
    """``"netcdf"`` or ``"zarr"``, from the extension of ``path``.

    Examples
    --------
    >>> output_format("a.nc"), output_format("out/b.zarr")
    ('netcdf', 'zarr')
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".zarr":
        return "zarr"
    if suffix in NETCDF_SUFFIXES:
        return "netcdf"
    raise ConfigError(
        f"path must end in .zarr or one of {', '.join(NETCDF_SUFFIXES)} (the format follows "
        f"the extension), got {os.fspath(path)!r}"
    )


def _exact_seconds(offsets_ns: np.ndarray) -> np.ndarray:
    """Float64 seconds that xarray decodes (``seconds * 1e9``, truncated) to ``offsets_ns``:
    the nearest float, raised by an ulp or two where the product falls short."""
    seconds = offsets_ns / 1e9
    for _ in range(4):
        short = (seconds * np.int64(10**9)).astype(np.int64) < offsets_ns
        if not short.any():
            break
        seconds = np.where(short, np.nextafter(seconds, np.inf), seconds)
    return seconds


def time_encoding(times: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
    """CF encoding of datetime64 ``times`` in units CDO reads, and float values if needed.

    The origin is the first time, to the whole second; the unit the coarsest of days,
    hours, minutes and seconds in which every time is a whole number (stored as int64,
    exact).  Times that are not whole seconds from it are stored as float64 seconds,
    returned as the second item (to write instead of the times): xarray reads them back
    to the very nanosecond as long as float64 holds it (offsets up to about 40 days).
    Not datetime64 (or empty, or with NaT): ``({}, None)``.

    Examples
    --------
    >>> t = np.array(["2026-01-01T00:00", "2026-01-01T06:00"], "datetime64[ns]")
    >>> time_encoding(t)[0]["units"]
    'hours since 2026-01-01 00:00:00'
    """
    if not np.issubdtype(times.dtype, np.datetime64) or times.size == 0 or np.isnat(times).any():
        return {}, None
    ns = times.astype("datetime64[ns]")
    origin = ns.min().astype("datetime64[s]")
    offsets = (ns - origin.astype("datetime64[ns]")).astype(np.int64)
    since = str(origin).replace("T", " ")
    base = {"calendar": "proleptic_gregorian", "_FillValue": None}
    for name, seconds in _UNITS:
        if not (offsets % (seconds * 10**9)).any():
            return base | {"units": f"{name} since {since}", "dtype": "int64"}, None
    units = f"seconds since {since}"
    return base | {"units": units, "dtype": "float64"}, _exact_seconds(offsets)


def _chunks(var: xr.Variable) -> tuple[int, ...] | None:
    """The on-disk chunk shape: the variable's dask chunks (their first block per dim)."""
    if var.chunks is None or var.ndim == 0:
        return None
    return tuple(max(1, c[0]) for c in var.chunks)


def _compressed(var: xr.Variable, fmt: str, level: int) -> dict[str, Any]:
    if level == 0 or var.dtype.kind not in "fiub" or var.ndim == 0:
        return {}
    chunks = _chunks(var)
    if fmt == "netcdf":
        out: dict[str, Any] = {"zlib": True, "complevel": level, "shuffle": True}
        if chunks is not None:
            out |= {"chunksizes": chunks, "original_shape": var.shape}
        return out
    from zarr.codecs import BloscCodec

    blosc = BloscCodec(cname="zstd", clevel=level, shuffle="shuffle")
    return {"compressors": (blosc,)} | ({"chunks": chunks} if chunks is not None else {})


def cf_encoding(ds: xr.Dataset, fmt: str = "netcdf", compression: int = 4) -> dict[str, dict]:
    """Encodings of every variable of ``ds`` for ``fmt`` (``"netcdf"`` or ``"zarr"``).

    Coordinates get no ``_FillValue``; datetime64 coordinates the units of
    :func:`time_encoding` where they are whole seconds from the first (sub-second times
    keep xarray's exact int64 nanoseconds here; :func:`write` stores them as exact float
    seconds), datetime64 data variables the same units; numeric data variables of one or
    more dimensions compression at ``compression`` (0-9; 0: none) in chunks equal to their
    dask chunks.

    Examples
    --------
    >>> ds = xr.Dataset({"h": ("x", np.zeros(3))}, coords={"x": [0.0, 1.0, 2.0]})
    >>> cf_encoding(ds)
    {'x': {'_FillValue': None}, 'h': {'zlib': True, 'complevel': 4, 'shuffle': True}}
    """
    check_int("compression", compression, 0, 9)
    out: dict[str, dict] = {}
    for name, coord in ds.coords.items():
        units, seconds = (
            time_encoding(np.asarray(coord.values)) if coord.dtype.kind == "M" else ({}, None)
        )
        out[str(name)] = {"_FillValue": None} | (units if seconds is None else {})
    for name, var in ds.data_vars.items():
        out[str(name)] = _compressed(var.variable, fmt, compression)
        if var.dtype.kind == "M":  # datetimes, e.g. the observations' times as written
            units, seconds = time_encoding(np.asarray(var.values))
            out[str(name)] |= units if seconds is None else {}
    return out


def _prepared(ds: xr.Dataset, latent: bool, precision: tuple, history: str | None):
    """``ds`` as written (latent trajectory kept or not, observations' coordinates as data
    variables, reduced precision, history) and the packing encodings."""
    if not isinstance(ds, xr.Dataset):
        raise ConfigError(f"analysis must be an xarray Dataset, got {type(ds).__name__}")
    if not isinstance(latent, bool):
        raise ConfigError(f"latent must be True or False, got {latent!r}")
    if history is not None and not isinstance(history, str):
        raise ConfigError(f"history must be a string or None, got {history!r}")
    if not latent:
        ds = ds.drop_vars([n for n in ("latent_state",) if n in ds.data_vars])
    ds = ds.reset_coords(observation_coords(ds))  # CDO cannot assign them: data variables
    ds, packing = reduced_precision(ds, *precision)
    if history is not None:
        ds = ds.copy()
        ds.attrs["history"] = history
    return ds, packing


def _with_times(ds: xr.Dataset) -> xr.Dataset:
    """Sub-second datetime coordinates replaced by their exact float seconds (encoded)."""
    for name, coord in ds.coords.items():
        if coord.dtype.kind != "M":
            continue
        enc, seconds = time_encoding(np.asarray(coord.values))
        if seconds is not None:
            attrs = dict(coord.attrs) | {"units": enc["units"], "calendar": enc["calendar"]}
            ds = ds.assign_coords({name: (coord.dims, seconds, attrs)})
    return ds


@contextmanager
def _small_chunk_cache() -> Iterator[None]:
    """A 1 MiB HDF5 chunk cache per variable while writing (netCDF-C's default, 64 MiB per
    variable, holds compressed fields' chunks until the file closes: 0.2 GB more peak memory
    for a 150x150, K = 100 analysis); restored after."""
    import netCDF4

    before = netCDF4.get_chunk_cache()
    netCDF4.set_chunk_cache(2**20, 31, before[2])
    try:
        yield
    finally:
        netCDF4.set_chunk_cache(*before)


def _netcdf_in_order(ds: xr.Dataset, path: Path, encoding: dict[str, dict]) -> None:
    """Write NetCDF one data variable at a time, each computed whole: HDF5 lays the file out
    in the order chunks arrive, which dask's parallel (or tie-broken) order does not fix."""
    coords = {str(k): encoding[str(k)] for k in ds.coords}
    ds.drop_vars(list(ds.data_vars)).to_netcdf(
        path, engine="netcdf4", format="NETCDF4", encoding=coords
    )
    for name in ds.data_vars:
        part = ds[[name]].compute()
        part.to_netcdf(path, mode="a", engine="netcdf4", encoding={str(name): encoding[str(name)]})


def write(
    analysis: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    latent: bool = True,
    compression: int = 4,
    significant_digits: int | Mapping[str, int] | None = None,
    spread_step: float | Mapping[str, float] | None = None,
    history: str | None = None,
    reproducible: bool = False,
) -> Path:
    """Write an analysis (or any Dataset) to NetCDF-4 or zarr, all or nothing.

    Parameters
    ----------
    analysis : Dataset
        E.g. the output of :func:`xlevda.assimilate` (dask-backed: decoded and
        written chunk by chunk).  The coordinates of its observation dimensions
        (times and positions of the observations, :mod:`xlevda.obs_output`) are
        written as data variables: CDO cannot assign auxiliary coordinates there.
    path : path-like
        ``*.zarr``: a zarr store; ``*.nc``, ``*.nc4``, ``*.netcdf``, ``*.cdf``: NetCDF-4.
        Replaced if it exists, once the new one is complete.
    latent : bool
        Keep the latent trajectory ``latent_state`` (default); ``False`` leaves it out.
    compression : int
        Compression level, 0 (none) to 9 (default 4): zlib with shuffle in NetCDF,
        Blosc-zstd with shuffle in zarr, in chunks equal to the dask chunks.
    significant_digits : int or mapping of str to int, optional
        Keep this many significant decimal digits (1-15) of the fields (float variables
        of three or more dimensions other than ``latent_state``), or of the variables a
        mapping names: CF-1.11 "bitround" quantization, ``ceil(digits * log2(10))``
        mantissa bits, relative error at most ``2**-(bits + 1)`` (below half a unit of
        the last kept digit); recorded in each variable's ``quantization`` and
        ``quantization_nsb`` attributes.  Compresses much better, but spends as many
        digits on near-zero values as on large ones and rounds away member-to-member
        differences below the last digit: for ensembles ``spread_step`` is the better
        trade.
    spread_step : float or mapping of str to float, optional
        Store the fields (float variables of three or more dims on ``member`` other
        than ``latent_state``), or the variables a mapping names, as integer multiples
        of a step: this fraction (in (0, 1]) of the variable's ensemble spread (RMS over
        all points of its standard deviation across members), as CF packed data
        (``scale_factor`` the step, ``int16`` or ``int32``), noted in its ``comment``.
        Each value is within half a step of the analysis (plus the rounding of the
        decoding's float type), the ensemble's RMS spread within
        ``spread_step * sqrt(K / (K - 1)) / 2`` of itself (:mod:`xlevda.quantize`).
        Computing the step decodes a lazy analysis once more (chunk by chunk).  Not
        together with ``significant_digits`` on the same variable.
    history : str, optional
        Replaces the ``history`` attribute (which records when the analysis was made).
    reproducible : bool
        Write byte-identical files for identical analyses (identical seeds and inputs
        give identical values): the ``history`` attribute is fixed (to ``history``, or
        else to its text without the time), and NetCDF variables are computed and
        written one at a time, in order (HDF5 lays a file out in the order chunks arrive;
        this holds one variable in memory at a time).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        Unknown extension or invalid option.

    Examples
    --------
    >>> import os, tempfile
    >>> ds = xr.Dataset({"h": (("time", "x"), np.ones((2, 3), np.float32))},
    ...     coords={"time": np.array(["2026-01-01", "2026-01-02"], "datetime64[ns]")})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     out = write(ds, os.path.join(d, "a.nc"), history="fixed")
    ...     back = xr.open_dataset(out, decode_times=False)
    ...     back.time.attrs["units"], back.attrs["history"], os.listdir(d)
    ('days since 2026-01-01', 'fixed', ['a.nc'])
    """
    fmt = output_format(path)
    if not isinstance(reproducible, bool):
        raise ConfigError(f"reproducible must be True or False, got {reproducible!r}")
    if reproducible and history is None and isinstance(analysis, xr.Dataset):
        history = " ".join(str(analysis.attrs.get("history", "")).split(" ")[1:]) or None
    ds, packing = _prepared(analysis, latent, (significant_digits, spread_step), history)
    encoding = cf_encoding(ds, fmt, compression)
    for name, enc in packing.items():
        encoding[name] |= enc
    ds = _with_times(ds)
    for name, coord in ds.coords.items():  # float seconds written as they are
        if coord.attrs.get("calendar") and coord.dtype.kind == "f":
            encoding[str(name)] = {"_FillValue": None, "dtype": "float64"}
    with replace_when_done(path) as tmp, _small_chunk_cache():
        if fmt == "netcdf" and reproducible:
            _netcdf_in_order(ds, tmp, encoding)
        elif fmt == "netcdf":
            ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
        else:
            with warnings.catch_warnings():  # consolidated, as xarray's default: fast to open
                warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
                ds.to_zarr(tmp, mode="w-", encoding=encoding)
    return Path(path)
