"""Each window's analysis saved as it completes, so that a killed run resumes where it stopped.

With ``RunOptions(checkpoint=directory)``, every window's :class:`~xlevda.cycle.Analysis`
is written to ``directory`` when its task completes (to a temporary name, renamed when
complete), under a name that fingerprints everything it depends on: the run's key (the
method's configuration, the surrogate's checksum, precision, ensemble size and seed; made by
:func:`xlevda.api.assimilate`), the case, the window's index, anchor and observations, and the
previous window's analysis.  A rerun of the same call finds the files of the windows already
done and continues from the first missing one; the values are the same as an uninterrupted
run's, because each window is a deterministic function of what the fingerprint covers.  A
changed input changes the fingerprints: stale files are never used.

Files are ``.npz`` archives of numpy arrays (no pickles) with a JSON layout of the analysis'
fields.  Numpy only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xlevda.cycle import Analysis, Ensemble, Window
from xlevda.errors import ConfigError
from xlevda.field_analysis import Residuals
from xlevda.methods.ldensf import FilterCarry

__all__ = ["Checkpoint"]

CLASSES: dict[str, type] = {c.__name__: c for c in (Analysis, Residuals, FilterCarry)}
"""The dataclasses an analysis may hold: nothing else is ever built from a file."""


def _flatten(obj: Any, name: str, arrays: dict[str, np.ndarray]) -> Any:
    """The JSON layout of ``obj``; its arrays go into ``arrays`` under ``name``-based keys."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return {"value": obj}
    if isinstance(obj, np.ndarray | np.generic):
        arrays[name] = np.asarray(obj)
        return {"array": name}
    if isinstance(obj, dict):
        return {"dict": {k: _flatten(v, f"{name}.{k}", arrays) for k, v in obj.items()}}
    if isinstance(obj, tuple | list):
        items = [_flatten(v, f"{name}.{i}", arrays) for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": items}
    if dataclasses.is_dataclass(obj) and type(obj).__name__ in CLASSES:
        fields = {
            f.name: _flatten(getattr(obj, f.name), f"{name}.{f.name}", arrays)
            for f in dataclasses.fields(obj)
        }
        return {"class": type(obj).__name__, "fields": fields}
    raise ConfigError(
        f"checkpoint: cannot save a {type(obj).__name__} in a window's analysis ({name})"
    )


def _build(layout: dict, arrays: Any, classes: dict[str, type]) -> Any:
    if "value" in layout:
        return layout["value"]
    if "array" in layout:
        return arrays[layout["array"]]
    if "dict" in layout:
        return {k: _build(v, arrays, classes) for k, v in layout["dict"].items()}
    if "tuple" in layout or "list" in layout:
        items = [_build(v, arrays, classes) for v in layout.get("tuple", layout.get("list"))]
        return tuple(items) if "tuple" in layout else items
    cls = classes[layout["class"]]
    return cls(**{k: _build(v, arrays, classes) for k, v in layout["fields"].items()})


def _digest(h: Any, obj: Any) -> None:
    """Feed ``obj`` (arrays, numbers, nested containers and dataclasses) into hash ``h``."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _digest(h, getattr(obj, f.name))
    elif isinstance(obj, dict):
        for k in sorted(obj):
            h.update(str(k).encode())
            _digest(h, obj[k])
    elif isinstance(obj, tuple | list):
        for v in obj:
            _digest(h, v)
    elif isinstance(obj, np.ndarray | np.generic):
        a = np.ascontiguousarray(obj)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    else:
        h.update(repr(obj).encode())


@dataclass(frozen=True)
class Checkpoint:
    """Where and under which key a run's window analyses are kept.

    Attributes
    ----------
    directory : Path
        Created if missing.
    key : str
        What the whole run depends on besides its windows (see the module docstring).

    Examples
    --------
    >>> import tempfile
    >>> from xlevda._obs import ObsTable
    >>> ckpt = Checkpoint(Path(tempfile.mkdtemp()), "run-key")
    >>> empty = np.zeros(0)
    >>> table = ObsTable(empty, empty, empty, np.zeros((0, 2)), empty, empty, empty)
    >>> window, start = Window(0, 0, table), Ensemble(-1, np.zeros((3, 2)))
    >>> analysis = Analysis(np.array([0]), np.ones((1, 3, 2)), {"cost": np.ones((1, 3))},
    ...                     np.array([0]))
    >>> ckpt.load(0, window, start) is None
    True
    >>> ckpt.save(0, window, start, analysis)
    >>> ckpt.load(0, window, start).diagnostics["cost"].tolist()
    [[1.0, 1.0, 1.0]]
    """

    directory: Path
    key: str

    def path(self, case: int, window: Window, previous: Analysis | Ensemble) -> Path:
        """The file of ``window``'s analysis of ``case`` after ``previous``."""
        h = hashlib.sha256(self.key.encode())
        _digest(h, (case, window.index, window.anchor, window.obs, previous))
        return self.directory / f"case{case}-window{window.index:05d}-{h.hexdigest()[:32]}.npz"

    def load(self, case: int, window: Window, previous: Analysis | Ensemble) -> Analysis | None:
        """The saved analysis, or ``None`` where there is none."""
        path = self.path(case, window, previous)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            layout = json.loads(str(data["__layout__"]))
            arrays = {k: data[k] for k in data.files if k != "__layout__"}
        return _build(layout, arrays, CLASSES)

    def save(
        self, case: int, window: Window, previous: Analysis | Ensemble, analysis: Analysis
    ) -> None:
        """Write ``analysis`` under a temporary name, then rename it (never a partial file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(case, window, previous)
        arrays: dict[str, np.ndarray] = {}
        layout = _flatten(analysis, "a", arrays)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, __layout__=np.array(json.dumps(layout)), **arrays)
        os.replace(tmp, path)
