"""Checks of what a saved surrogate or encoder file declares, before anything is allocated.

Torch only.  A file declares sizes (its config and schema) and stores weights; a
damaged or forged file can declare sizes that would allocate gigabytes, or store
NaN weights or nonsensical schema values.  :func:`declared_state` builds the
module the file declares on torch's ``meta`` device (shapes, no memory),
:func:`check_state` compares it with the stored tensors (names, shapes, kinds of
dtype, finite values) and :func:`check_schema` checks a schema's values; each
raises :class:`~xlevda.errors.SurrogateFileError` naming the entry, the value and
what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from xlevda.errors import SurrogateFileError, XlevdaError
from xlevda.surrogates.schema import Affine, SurrogateSchema
from xlevda.validate import is_int, is_positive, is_real

__all__ = ["check_schema", "check_state", "declared_state", "schema_from_dict"]


def declared_state(where: str, build: Callable[[], nn.Module]) -> dict[str, Tensor]:
    """The state dict (``meta`` tensors: shapes and dtypes only) of the module ``build`` makes.

    Raises
    ------
    SurrogateFileError
        ``build`` raises an :class:`~xlevda.errors.XlevdaError` (the declared config
        and schema do not make a module).

    Examples
    --------
    >>> declared_state("f", lambda: torch.nn.Linear(10**6, 10**6))["weight"].shape
    torch.Size([1000000, 1000000])
    """
    try:
        with torch.device("meta"):
            return dict(build().state_dict())
    except XlevdaError as err:
        raise SurrogateFileError(f"{where} declares an invalid model: {err}") from None


def _check_entry(where: str, name: str, got: Tensor, want: Tensor, free_rows: bool) -> None:
    shape, expected = tuple(got.shape), tuple(want.shape)
    if free_rows:
        ok = len(shape) == len(expected) and shape[1:] == expected[1:]
        declared = "(any, " + ", ".join(map(str, expected[1:])) + ")"
    else:
        ok, declared = shape == expected, str(expected)
    if not ok:
        raise SurrogateFileError(
            f"{where}: weight {name!r} has shape {shape}, the stored config declares {declared}"
        )
    if want.is_floating_point() != got.is_floating_point() or (
        not want.is_floating_point() and got.dtype != want.dtype
    ):
        kind = "a floating dtype" if want.is_floating_point() else str(want.dtype)
        raise SurrogateFileError(f"{where}: weight {name!r} has dtype {got.dtype}, expected {kind}")
    if got.is_floating_point():
        bad = int((~torch.isfinite(got)).sum())
        if bad:
            raise SurrogateFileError(
                f"{where}: weight {name!r} holds {bad} NaN or infinite value(s) of {got.numel()}"
            )


def check_state(
    where: str,
    stored: object,
    declared: Mapping[str, Tensor],
    free_rows: Collection[str] = (),
) -> dict[str, Tensor]:
    """Check stored weights against the declared state dict; returns them.

    Parameters
    ----------
    where : str
        The file, in messages.
    stored : object
        The file's ``state_dict`` entry.
    declared : mapping of str to Tensor
        From :func:`declared_state`.
    free_rows : collection of str
        Entries whose first dimension the file chooses (the rest must match).

    Raises
    ------
    SurrogateFileError
        ``stored`` is not a mapping of names to tensors, names are missing or
        unexpected, a shape differs, a dtype is of another kind, or a floating
        entry holds NaN or infinity.

    Examples
    --------
    >>> check_state("f", {"w": torch.ones(2)}, {"w": torch.empty(2, device="meta")})["w"]
    tensor([1., 1.])
    >>> check_state("f", {"w": torch.ones(3)}, {"w": torch.empty(2, device="meta")})
    Traceback (most recent call last):
    ...
    xlevda.errors.SurrogateFileError: f: weight 'w' has shape (3,), the stored config declares (2,)
    """
    if not isinstance(stored, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in stored.items()
    ):
        raise SurrogateFileError(
            f"{where}: state_dict must map names to tensors, got {type(stored).__name__}"
        )
    missing, unexpected = sorted(set(declared) - set(stored)), sorted(set(stored) - set(declared))
    if missing or unexpected:
        raise SurrogateFileError(
            f"{where}: the weights do not match the stored config: missing {missing}, "
            f"unexpected {unexpected}"
        )
    for name, want in declared.items():
        _check_entry(where, name, stored[name], want, name in free_rows)
    return dict(stored)


def _names(where: str, field: str, names: object, attrs: object, min_len: int) -> None:
    if (
        not isinstance(names, tuple)
        or len(names) < min_len
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise SurrogateFileError(
            f"{where}: schema {field} must be {min_len} or more distinct non-empty names, "
            f"got {names!r}"
        )
    if not isinstance(attrs, tuple) or len(attrs) != len(names):
        raise SurrogateFileError(
            f"{where}: schema {field} has {len(names)} names but attributes {attrs!r}"
        )
    for a in attrs:
        if not isinstance(a, dict) or not all(isinstance(k, str) for k in a):
            raise SurrogateFileError(f"{where}: schema {field} attributes must be dicts, got {a!r}")


def _finite(where: str, field: str, values: Any, size: int | None = None) -> None:
    flat = np.asarray(values, dtype=object).ravel()
    ok = all(is_real(v) for v in flat) and (size is None or flat.size == size)
    if not ok:
        wanted = "finite numbers" if size is None else f"{size} finite numbers"
        raise SurrogateFileError(f"{where}: schema {field} must be {wanted}, got {values!r}")


def _affine(where: str, field: str, affine: Affine, size: int) -> None:
    _finite(where, f"{field}.offset", affine.offset, size)
    _finite(where, f"{field}.scale", affine.scale, size)


def _time(where: str, schema: SurrogateSchema) -> None:
    if not is_int(schema.n_frames, 1):
        raise SurrogateFileError(f"{where}: schema n_frames must be an integer >= 1")
    if not is_positive(schema.time_step):
        raise SurrogateFileError(
            f"{where}: schema time_step must be a finite number > 0, got {schema.time_step!r}"
        )
    if not isinstance(schema.time_is_datetime, bool) or not isinstance(schema.time_units, str):
        raise SurrogateFileError(f"{where}: schema time_is_datetime/time_units have wrong types")
    times = [schema.time_origin, *schema.frame_times]
    if schema.frame_times and len(schema.frame_times) != schema.n_frames:
        raise SurrogateFileError(
            f"{where}: schema frame_times has {len(schema.frame_times)} entries, n_frames is "
            f"{schema.n_frames}"
        )
    try:
        if schema.time_is_datetime:
            bad = [t for t in times if not isinstance(t, str) or np.isnat(np.datetime64(t, "ns"))]
        else:
            bad = [t for t in times if not math.isfinite(float(t))]
    except (TypeError, ValueError):
        bad = times
    if bad:
        raise SurrogateFileError(f"{where}: schema times are not valid times: {bad[:3]!r}")


def check_schema(where: str, schema: SurrogateSchema) -> None:
    """Raise unless every value of ``schema`` is valid: distinct names, attributes per name,
    finite normalizations and ranges of the right lengths, a finite positive time step, valid
    times, a finite grid on the schema's coordinates.

    Raises
    ------
    SurrogateFileError

    Examples
    --------
    >>> check_schema("f", SurrogateSchema.minimal(3))
    """
    _names(where, "variables", schema.variables, schema.variable_attrs, 1)
    _names(where, "coords", schema.coords, schema.coord_attrs, 1)
    _names(where, "params", schema.params, schema.param_attrs, 1)
    _affine(where, "output_norm", schema.output_norm, len(schema.variables))
    _affine(where, "coord_norm", schema.coord_norm, len(schema.coords))
    _affine(where, "param_norm", schema.param_norm, len(schema.params))
    _finite(where, "param_range", schema.param_range, 2 * len(schema.params))
    if any(lo > hi for lo, hi in schema.param_range):
        raise SurrogateFileError(
            f"{where}: schema param_range must be (low, high) with low <= high, got "
            f"{schema.param_range!r}"
        )
    _time(where, schema)
    if not isinstance(schema.grid, dict) or not set(schema.grid) <= set(schema.coords):
        raise SurrogateFileError(
            f"{where}: schema grid must map coordinates of {schema.coords} to values"
        )
    for name, values in schema.grid.items():
        _finite(where, f"grid[{name!r}]", values)
    _grid_shape(where, schema)
    if not isinstance(schema.attrs, dict):
        raise SurrogateFileError(f"{where}: schema attrs must be a dict, got {schema.attrs!r}")


def _grid_shape(where: str, schema: SurrogateSchema) -> None:
    """Raise unless ``grid_shape`` is empty or positive sizes whose product is each grid
    coordinate's number of values."""
    shape = schema.grid_shape
    if not shape:
        return
    sizes = list(shape.values())
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise SurrogateFileError(
            f"{where}: schema grid_shape must map dimensions to sizes >= 1, got {shape!r}"
        )
    n = int(np.prod(sizes))
    bad = {c: len(v) for c, v in schema.grid.items() if len(v) != n}
    if bad or set(schema.grid) != set(schema.coords):
        raise SurrogateFileError(
            f"{where}: schema grid_shape {shape!r} needs {n} values of each coordinate "
            f"{schema.coords} in grid, got {dict((c, len(v)) for c, v in schema.grid.items())}"
        )


def schema_from_dict(where: str, data: object) -> SurrogateSchema:
    """The schema a file stores, its containers and values checked (:func:`check_schema`).

    Raises
    ------
    SurrogateFileError

    Examples
    --------
    >>> schema_from_dict("f", SurrogateSchema.minimal(3).to_dict()).n_frames
    3
    >>> schema_from_dict("f", SurrogateSchema.minimal(3).to_dict() | {"params": "ab"})
    Traceback (most recent call last):
    ...
    xlevda.errors.SurrogateFileError: f: schema params must be a list of names, got 'ab'
    """
    if not isinstance(data, dict):
        raise SurrogateFileError(f"{where}: schema must be a dict, got {type(data).__name__}")
    for key in ("variables", "coords", "params", "variable_attrs", "coord_attrs", "param_attrs"):
        if not isinstance(data.get(key), list | tuple):
            what = "names" if key in ("variables", "coords", "params") else "dicts"
            raise SurrogateFileError(
                f"{where}: schema {key} must be a list of {what}, got {data.get(key)!r}"
            )
    try:
        schema = SurrogateSchema.from_dict(data)
    except (XlevdaError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise SurrogateFileError(
            f"{where} has an invalid schema: {type(err).__name__}: {err}"
        ) from None
    check_schema(where, schema)
    return schema
