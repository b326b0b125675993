"""Lossy precision options of :func:`xlevda.write`: significant digits and spread steps.

Two ways to store fewer bits of the fields, each bounded and recorded in the file:

- **significant digits** (:func:`quantize_digits`): CF-1.11 "bitround" quantization, a
  relative precision -- each value keeps ``ceil(digits * log2(10))`` mantissa bits,
  within ``2**-(bits + 1)`` of itself.  Near-zero values keep as many digits as large
  ones, and small member-to-member differences of large values are rounded away.
- **spread steps** (:func:`spread_packing`): an absolute precision tied to what an
  ensemble resolves -- each field is stored as integer multiples of a step equal to
  ``fraction`` times its ensemble spread (the root mean square over all points of the
  standard deviation across members, ``ddof = 1``), as CF packed data (``scale_factor``,
  ``add_offset``; ``int16`` where the field's range fits, else ``int32``; ``_FillValue``
  the type's smallest value).  ``int16`` unpacks to the field's float type, ``int32`` to
  float64 as CF advises (and xarray unpacks zarr's JSON attributes to float64).

  Every value is within half a step of itself (plus the rounding of the unpacking's
  float type); at each point the ensemble's standard deviation moves by at most
  ``sqrt(K / (K - 1))`` half-steps, so the spread's root mean square by at most
  ``fraction * sqrt(K / (K - 1)) / 2`` of itself (a bound; the rounding noise,
  independent of the members where the spread exceeds the step, raises it by about
  ``fraction**2 / 24``: 4e-4 for 0.1).  Differences between members below a step are not
  resolved.  The step needs the spread and the range of each field before writing: a
  first pass over the (lazy) fields computes them chunk by chunk (dask), the write
  decodes them again.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import dask
import numpy as np
import xarray as xr

from xlevda._version import VERSION
from xlevda.errors import ConfigError
from xlevda.validate import check_int, check_real

__all__ = [
    "MEMBER_DIM",
    "bitround",
    "pack",
    "quantize_digits",
    "reduced_precision",
    "spread_packing",
]

MEMBER_DIM = "member"
"""The ensemble dimension whose spread sets the step of :func:`spread_packing`."""

_INTS = (np.dtype(np.int16), np.dtype(np.int32))
"""Packed types, smallest first; each one's smallest value is the ``_FillValue``."""


def bitround(values: np.ndarray, keepbits: int) -> np.ndarray:
    """Round floats to ``keepbits`` mantissa bits (to nearest, ties to even); NaN and
    infinities unchanged.  The relative error is at most ``2**-(keepbits + 1)``.

    Examples
    --------
    >>> bitround(np.array([1.0, 1.2, np.nan], np.float32), 2).tolist()
    [1.0, 1.25, nan]
    """
    values = np.asarray(values)
    mantissa = {np.dtype(np.float32): 23, np.dtype(np.float64): 52}.get(values.dtype)
    if mantissa is None or keepbits >= mantissa:
        return values
    uint = np.uint32 if mantissa == 23 else np.uint64
    drop = uint(mantissa - keepbits)
    bits = values.view(uint)
    one = uint(1)
    rounded = bits + ((one << (drop - one)) - one) + ((bits >> drop) & one)
    rounded &= ~((one << drop) - one)
    return np.where(np.isfinite(values), rounded.view(values.dtype), values)


def _is_field(name: str, var: xr.DataArray, ensemble: bool) -> bool:
    """A float variable of three or more dimensions other than the latent trajectory (and on
    the member dimension when ``ensemble``): what an option given as one number applies to."""
    on_members = MEMBER_DIM in var.dims or not ensemble
    return var.dtype.kind == "f" and var.ndim >= 3 and name != "latent_state" and on_members


def _selected(ds: xr.Dataset, option: str, value, ensemble: bool) -> dict[str, Any]:
    """``{variable: value}`` of an option given as one value (every field) or a mapping."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        return {str(n): value for n, v in ds.data_vars.items() if _is_field(str(n), v, ensemble)}
    unknown = sorted(set(value) - set(map(str, ds.data_vars)))
    if unknown:
        raise ConfigError(
            f"{option} names {unknown}, not data variables of the analysis "
            f"{sorted(map(str, ds.data_vars))}"
        )
    for name in value:
        if ds[name].dtype.kind != "f":
            raise ConfigError(f"{option}[{name!r}]: {name!r} is not a float variable")
        if ensemble and MEMBER_DIM not in ds[name].dims:
            raise ConfigError(
                f"{option}[{name!r}]: {name!r} has dims {ds[name].dims}, no {MEMBER_DIM!r} "
                "dimension whose spread would set its step"
            )
    return dict(value)


def quantize_digits(ds: xr.Dataset, significant_digits) -> xr.Dataset:
    """``ds`` with fields bit-rounded to ``significant_digits``, as CF-1.11 quantization.

    ``significant_digits``: ``None`` (``ds`` unchanged), an int 1-15 for every field
    (float variable of three or more dimensions other than ``latent_state``), or a mapping
    ``{variable: digits}``.  Each keeps ``ceil(digits * log2(10))`` mantissa bits
    (:func:`bitround`), recorded in its ``quantization`` and ``quantization_nsb``
    attributes and a ``quantization_info`` container variable.

    Examples
    --------
    >>> ds = xr.Dataset({"h": (("t", "y", "x"), np.full((1, 1, 2), 1.2345))})
    >>> quantize_digits(ds, 2).h.values.ravel().tolist(), quantize_digits(ds, 2).h.quantization_nsb
    ([1.234375, 1.234375], 7)
    """
    digits = _selected(ds, "significant_digits", significant_digits, ensemble=False)
    if not digits:
        return ds
    ds = ds.copy()
    for name, d in digits.items():
        check_int(f"significant_digits[{name!r}]", d, 1, 15)
        nsb = math.ceil(d * math.log2(10))
        var = ds[name]
        rounded = xr.apply_ufunc(
            bitround, var, kwargs={"keepbits": nsb}, dask="parallelized", keep_attrs=True
        )
        rounded.encoding = dict(var.encoding)
        rounded.attrs |= {"quantization": "quantization_info", "quantization_nsb": nsb}
        ds[name] = rounded
    ds["quantization_info"] = xr.DataArray(
        np.int8(0),
        attrs={"algorithm": "bitround", "implementation": f"xlevda version {VERSION}"},
    )
    return ds


def _statistics(ds: xr.Dataset, names: list[str]) -> dict[str, tuple[float, float, float]]:
    """``{variable: (RMS ensemble spread, minimum, maximum)}``, NaN skipped, in one pass."""
    lazy = []
    for name in names:
        x = ds[name].astype(np.float64)
        spread = np.sqrt(x.var(MEMBER_DIM, ddof=1).mean())
        lazy.append((spread.data, x.min().data, x.max().data))
    (values,) = dask.compute(lazy)
    return {n: tuple(float(v) for v in vals) for n, vals in zip(names, values, strict=True)}


def _packing(spread: float, lo: float, hi: float, fraction: float, dtype: np.dtype):
    """The CF packing encoding of a field, or ``None`` where no integer type holds its
    range in steps of ``fraction * spread`` (or the spread is zero or not finite)."""
    for packed in _INTS:
        floats = dtype.type if packed.itemsize < dtype.itemsize else np.float64
        step = floats(fraction * spread)
        offset = floats((lo + hi) / 2)
        if not (np.isfinite([step, offset, lo, hi]).all() and step > 0):
            return None
        reach = max(hi - float(offset), float(offset) - lo) / float(step)
        if reach + 1 <= np.iinfo(packed).max:  # rounded, |q| <= reach + 1/2
            fill = packed.type(np.iinfo(packed).min)
            return {"dtype": packed, "scale_factor": step, "add_offset": offset, "_FillValue": fill}
    return None


def pack(values: np.ndarray, step: float, offset: float, dtype: np.dtype) -> np.ndarray:
    """``round((values - offset) / step)`` as ``dtype`` (in float64, one temporary), NaN as
    the type's smallest value (the ``_FillValue``).  The caller makes sure the range fits.

    Examples
    --------
    >>> pack(np.array([0.26, -0.24, np.nan], np.float32), 0.5, 0.0, np.dtype(np.int16)).tolist()
    [1, 0, -32768]
    """
    out = np.asarray(values, dtype=np.float64).copy()
    out -= offset
    out /= step
    np.rint(out, out=out)
    missing = np.isnan(out)
    out[missing] = 0.0  # cast quietly, filled below
    packed = out.astype(dtype)
    packed[missing] = np.iinfo(dtype).min
    return packed


def spread_packing(ds: xr.Dataset, spread_step) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """Fields packed to steps of a fraction of their ensemble spread (module docstring).

    Parameters
    ----------
    ds : Dataset
        With fields on :data:`MEMBER_DIM` (lazy or not).
    spread_step : float or mapping of str to float, optional
        The step as a fraction (in (0, 1]) of each field's RMS ensemble spread: one for
        every field (float variable of three or more dims on ``member``, other than
        ``latent_state``), or ``{variable: fraction}``.  ``None``: nothing packed.

    Returns
    -------
    ds : Dataset
        ``ds`` with the packed variables as their integers (:func:`pack`, lazily where
        ``ds`` is), their ``scale_factor``, ``add_offset`` and a ``comment`` saying their
        step as attributes.
    encodings : dict
        ``{variable: {"dtype", "_FillValue"}}`` to add to each one's encoding.

    Warns
    -----
    UserWarning
        A field whose spread is zero or not finite, or whose range spans more steps than
        ``int32`` holds, is written as it is (no loss), once per such field.

    Examples
    --------
    >>> m = np.array([0.0, 0.1, 0.2, 0.3])
    >>> ds = xr.Dataset({"h": (("t", "member", "x"), m[None, :, None] + [[[0.0, 5.0]]])})
    >>> out, enc = spread_packing(ds, 0.5)
    >>> enc["h"]["dtype"], float(out.h.scale_factor) == 0.5 * float(m.std(ddof=1))
    (dtype('int16'), True)
    """
    fractions = _selected(ds, "spread_step", spread_step, ensemble=True)
    if spread_step is None:
        return ds, {}
    if not fractions:
        raise ConfigError(
            f"spread_step={spread_step!r}: no field to pack, expected float variables of "
            f"three or more dims on a {MEMBER_DIM!r} dimension, got {dict(ds.sizes)}"
        )
    for name, f in fractions.items():
        check_real(f"spread_step[{name!r}]", f, 0.0, 1.0, low_open=True)
    stats = _statistics(ds, list(fractions))
    ds = ds.copy()
    encodings: dict[str, dict[str, Any]] = {}
    for name, f in fractions.items():
        spread, lo, hi = stats[name]
        enc = _packing(spread, lo, hi, float(f), np.dtype(ds[name].dtype))
        if enc is None:
            warnings.warn(
                f"spread_step: {name!r} written as it is, not packed: RMS ensemble spread "
                f"{spread:.3g}, values in [{lo:.3g}, {hi:.3g}] (a zero or non-finite spread, "
                "or a range of more steps than int32 holds)",
                UserWarning,
                stacklevel=3,
            )
            continue
        var = ds[name]
        units = var.attrs.get("units", "")
        note = (
            f"stored to multiples of {float(enc['scale_factor']):.6g} {units} (scale_factor), "
            f"{f:g} x the RMS ensemble spread {spread:.6g} {units}: each value within half a "
            "step of the analysis"
        ).replace("  ", " ")
        attrs = dict(var.attrs)
        attrs["comment"] = f"{attrs['comment']}; {note}" if attrs.get("comment") else note
        packed = xr.apply_ufunc(
            pack,
            var,
            kwargs={
                "step": float(enc["scale_factor"]),
                "offset": float(enc["add_offset"]),
                "dtype": enc["dtype"],
            },
            dask="parallelized",
            output_dtypes=[enc["dtype"]],
        )
        attrs |= {"scale_factor": enc["scale_factor"], "add_offset": enc["add_offset"]}
        ds[name] = packed.assign_attrs(attrs)
        encodings[name] = {"dtype": enc["dtype"], "_FillValue": enc["_FillValue"]}
    return ds, encodings


def reduced_precision(
    ds: xr.Dataset, significant_digits, spread_step
) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """:func:`quantize_digits` and :func:`spread_packing` of ``ds``, on different variables.

    Returns ``ds`` quantized and prepared for packing, and the packing encodings.

    Examples
    --------
    >>> ds = xr.Dataset({"h": (("t", "member", "x"), np.ones((1, 2, 2)))})
    >>> reduced_precision(ds, 3, 0.1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: significant_digits and spread_step both apply to ['h']: \
give each variable one of them
    """
    digits = _selected(ds, "significant_digits", significant_digits, ensemble=False)
    steps = _selected(ds, "spread_step", spread_step, ensemble=True)
    both = sorted(set(digits) & set(steps))
    if both:
        raise ConfigError(
            f"significant_digits and spread_step both apply to {both}: give each variable "
            "one of them"
        )
    return spread_packing(quantize_digits(ds, significant_digits), spread_step)
