"""The file format of every object xlevda saves: one ``torch.save`` of plain containers.

A file holds an envelope -- ``format`` (what kind of file), ``format_version``
and ``xlevda_version`` (who wrote it) -- the object's own entries (weights as CPU
tensors, its config and schema as plain dicts, ...) and ``sha256``, the checksum of
everything else in the file (:func:`content_sha256`).  :func:`write_file` writes it
under a temporary name and renames it when complete
(:func:`~xlevda.atomic.replace_when_done`); :func:`read_file` maps it into memory
with ``weights_only=True`` (no pickled code runs, and nothing is allocated beyond
the file's own bytes), checks the envelope and verifies the checksum, raising
:class:`~xlevda.errors.SurrogateFileError` for anything that is not such a file.
Files written before xlevda stored a checksum (no ``sha256`` entry) are read
unverified.  :func:`half_state` stores chosen weights in float16.

The formats: :data:`SURROGATE_FORMAT` (:meth:`LDNetModel.save
<xlevda.surrogates.ldnet.LDNetModel.save>`) and :data:`ENCODER_FORMAT`
(:meth:`ObservationEncoder.save <xlevda.surrogates.encoder.ObservationEncoder.save>`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import torch
from torch import Tensor

from xlevda.atomic import replace_when_done
from xlevda.errors import ConfigError, SurrogateFileError

__all__ = [
    "ENCODER_FORMAT",
    "SURROGATE_FORMAT",
    "FileFormat",
    "content_sha256",
    "half_state",
    "read_file",
    "write_file",
    "xlevda_version",
]


@dataclass(frozen=True)
class FileFormat:
    """What identifies one kind of saved file.

    Attributes
    ----------
    name : str
        Stored as the file's ``format``.
    version : int
        Newest ``format_version`` this xlevda writes and reads.
    what : str
        What the file holds, in error messages.
    """

    name: str
    version: int
    what: str


SURROGATE_FORMAT = FileFormat("xlevda-surrogate", 1, "surrogate")
"""Format of a saved surrogate (:class:`~xlevda.surrogates.ldnet.LDNetModel`)."""

ENCODER_FORMAT = FileFormat("xlevda-encoder", 1, "encoder")
"""Format of a saved encoder (:class:`~xlevda.surrogates.encoder.ObservationEncoder`)."""


def xlevda_version() -> str:
    """Version of the running xlevda (``"unknown"`` when not installed)."""
    version = getattr(sys.modules.get("xlevda"), "__version__", None)
    if version is not None:
        return str(version)
    try:
        return metadata.version("xlevda")
    except metadata.PackageNotFoundError:
        return "unknown"


def _feed(h: Any, obj: Any) -> None:
    """Add ``obj`` (tensors in plain containers of JSON values) to the hash ``h``."""
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor {t.dtype!s} {tuple(obj.shape)}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"dict {len(obj)}\n".encode())
        for key in sorted(obj, key=repr):
            h.update(f"{json.dumps(key)}\n".encode())
            _feed(h, obj[key])
    elif isinstance(obj, list | tuple):
        h.update(f"list {len(obj)}\n".encode())
        for value in obj:
            _feed(h, value)
    else:
        h.update(f"{json.dumps(obj)}\n".encode())


def content_sha256(entries: Mapping[str, Any]) -> str:
    """SHA-256 of a file's entries other than ``sha256``: every tensor's dtype, shape and
    bytes, and every other value as JSON, keys in sorted order.

    Raises
    ------
    TypeError
        An entry is neither a tensor, a container nor a JSON value.

    Examples
    --------
    >>> import torch
    >>> a = content_sha256({"w": torch.zeros(2), "n": 1})
    >>> a == content_sha256({"n": 1, "w": torch.zeros(2)})
    True
    >>> a == content_sha256({"w": torch.ones(2), "n": 1})
    False
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in entries.items() if k != "sha256"})
    return h.hexdigest()


def write_file(path: str | os.PathLike[str], fmt: FileFormat, entries: Mapping[str, Any]) -> None:
    """Write ``entries`` (plain containers and CPU tensors) in the envelope of ``fmt``.

    The file gets the checksum ``sha256`` of its content (:func:`content_sha256`) and
    appears under ``path`` only once completely written.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_file(os.path.join(d, "e.pt"), ENCODER_FORMAT, {"config": {}})
    ...     read_file(os.path.join(d, "e.pt"), ENCODER_FORMAT)["config"]
    {}
    """
    envelope = {
        "format": fmt.name,
        "format_version": fmt.version,
        "xlevda_version": xlevda_version(),
    }
    payload = {**envelope, **entries}
    payload["sha256"] = content_sha256(payload)
    with replace_when_done(path) as tmp:
        torch.save(payload, tmp)


def read_file(
    path: str | os.PathLike[str],
    fmt: FileFormat,
    *,
    required: Sequence[str] = (),
    kind: str | None = None,
) -> dict[str, Any]:
    """Read a file written by :func:`write_file` in format ``fmt`` (CPU tensors).

    Parameters
    ----------
    path : path-like
    fmt : FileFormat
    required : sequence of str
        Keys the file must hold.
    kind : str, optional
        The value its ``kind`` entry must have.

    Raises
    ------
    SurrogateFileError
        The file is not a torch file, is truncated or corrupt, is not a dict, has
        another ``format``, an invalid or newer ``format_version``, lacks a required
        key, has another ``kind``, or its content does not match its ``sha256``.
    FileNotFoundError
        ``path`` does not exist.
    """
    where = repr(os.fspath(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise SurrogateFileError(
            f"{where} is not a readable xlevda {fmt.what} file (not a torch file, truncated or "
            f"corrupt): {type(err).__name__}: {err}"
        ) from None
    if not isinstance(payload, dict):
        raise SurrogateFileError(
            f"{where} holds a {type(payload).__name__}, not an xlevda {fmt.what}"
        )
    if payload.get("format") != fmt.name:
        raise SurrogateFileError(
            f"{where} has format {payload.get('format')!r}, expected {fmt.name!r}"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise SurrogateFileError(f"{where} has an invalid format version {version!r}")
    if version > fmt.version:
        raise SurrogateFileError(
            f"{where} has format version {version}, this xlevda ({xlevda_version()}) reads "
            f"versions <= {fmt.version}; upgrade xlevda (file written by xlevda "
            f"{payload.get('xlevda_version', 'unknown')})"
        )
    missing = [k for k in required if k not in payload]
    if missing:
        raise SurrogateFileError(f"{where} lacks the keys {missing}")
    if kind is not None and payload.get("kind") != kind:
        raise SurrogateFileError(
            f"{where} holds a {fmt.what} of kind {payload.get('kind')!r}, expected {kind!r}"
        )
    _verify(where, payload)
    return payload


def _verify(where: str, payload: dict[str, Any]) -> None:
    """Raise unless ``payload`` matches its stored checksum (none stored: older file)."""
    if "sha256" not in payload:
        return
    stored = payload["sha256"]
    try:
        actual = content_sha256(payload)
    except (TypeError, ValueError) as err:
        raise SurrogateFileError(f"{where} holds a value of an unexpected type: {err}") from None
    if stored != actual:
        raise SurrogateFileError(
            f"{where} is corrupt or was modified: its content has SHA-256 {actual}, the file "
            f"records {stored!r}"
        )


def half_state(state: dict[str, Tensor], names: Sequence[str]) -> list[str]:
    """Round the floating entries ``names`` of ``state`` to float16 in place; the names.

    Raises
    ------
    ConfigError
        ``names`` is a string, names no floating entry, or an entry holds NaN,
        infinity or values beyond float16's range.

    Examples
    --------
    >>> import torch
    >>> state = {"w": torch.ones(2), "n": torch.zeros(1, dtype=torch.long)}
    >>> half_state(state, ["w"]), state["w"].dtype
    (['w'], torch.float16)
    """
    if isinstance(names, str):
        raise ConfigError(f"half must be a sequence of state-dict names, got the string {names!r}")
    half = list(names)
    bad = [n for n in half if n not in state or not state[n].is_floating_point()]
    if bad:
        floats = sorted(k for k, v in state.items() if v.is_floating_point())
        raise ConfigError(f"half names {bad}, not floating state-dict entries {floats}")
    for name in half:
        if not bool(torch.isfinite(state[name]).all()):
            raise ConfigError(f"half: {name!r} holds NaN or infinite values")
        big = float(state[name].abs().max()) if state[name].numel() else 0.0
        if not big <= torch.finfo(torch.float16).max:
            raise ConfigError(
                f"half: {name!r} holds values up to {big:.6g}, beyond float16's "
                f"{torch.finfo(torch.float16).max:.6g}; store it in full precision"
            )
        state[name] = state[name].half()
    return half
