"""The simulator skeleton shared by the benchmark systems: batching over runs, progress, Dataset.

Every system integrates many runs (one per parameter draw) at once, a batch of runs at a time,
writes each output frame into preallocated NumPy arrays and returns them as a CF-labelled
:class:`xarray.Dataset`.  This module holds that skeleton; each system supplies its stepper as
a function integrating one batch of runs (:func:`integrate_runs`) and its coordinates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from xlevda.errors import ConfigError
from xlevda.systems._cf import RUN_ATTRS
from xlevda.validate import is_int

__all__ = [
    "CPU_BATCH_BYTES",
    "BatchIntegrator",
    "check_dtype",
    "datetime_axis",
    "integrate_runs",
    "resolve_batch_size",
    "to_dataset",
]

CPU_BATCH_BYTES = 2**20
"""Default CPU batch: runs whose one output field fits in about one L2 cache (1 MiB)."""

BatchIntegrator = Callable[[slice, dict[str, np.ndarray], tqdm], None]
"""A system's stepper over one batch: ``(runs, out, bar)``, writing each frame into ``out``.

``runs`` is the slice of runs in the batch, ``out`` maps each variable to the view
``(batch, time, ...)`` of its output array and ``bar`` is the progress bar to advance.
"""


def check_dtype(dtype: object) -> None:
    """Raise :class:`~xlevda.errors.ConfigError` unless ``dtype`` is a floating torch dtype.

    Examples
    --------
    >>> check_dtype(torch.float32)
    >>> check_dtype("float64")
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: dtype must be a floating torch.dtype such as torch.float64, \
got 'float64'
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(
            f"dtype must be a floating torch.dtype such as torch.float64, got {dtype!r}"
        )


def resolve_batch_size(
    batch_size: int | None, n_runs: int, device: torch.device, field_bytes: int | None = None
) -> int:
    """Runs integrated together: ``batch_size`` capped at ``n_runs``, or the default.

    The default is all runs on an accelerator or when ``field_bytes`` is None; on CPU as many
    runs as keep one output field (``field_bytes`` per run) within :data:`CPU_BATCH_BYTES`.

    Examples
    --------
    >>> cpu = torch.device("cpu")
    >>> resolve_batch_size(None, 200, cpu, 48 * 48 * 8), resolve_batch_size(8, 3, cpu)
    (56, 3)
    """
    if batch_size is None:
        if device.type != "cpu" or field_bytes is None:
            return n_runs
        return max(1, min(n_runs, CPU_BATCH_BYTES // field_bytes))
    if not is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")
    return min(batch_size, n_runs)


def integrate_runs(
    integrate_batch: BatchIntegrator,
    *,
    n_runs: int,
    batch: int,
    shape: tuple[int, ...],
    variables: tuple[str, ...],
    dtype: torch.dtype,
    steps_per_batch: int,
    unit: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """Run ``integrate_batch`` over the runs, ``batch`` at a time, into fresh output arrays.

    Parameters
    ----------
    integrate_batch : BatchIntegrator
        The system's stepper over one batch of runs.
    n_runs, batch : int
        Number of runs and runs per batch.
    shape : tuple of int
        Shape ``(time, ...)`` of one run's output of each variable.
    variables : tuple of str
        Names of the output variables.
    dtype : torch.dtype
        Dtype of the computation; the arrays have the NumPy equivalent.
    steps_per_batch : int
        Progress-bar units one batch advances.
    unit : str
        Name of a progress-bar unit.
    progress : bool
        Show the progress bar.

    Returns
    -------
    dict of str to numpy.ndarray
        Each variable's output, shape ``(n_runs, *shape)``.

    Examples
    --------
    >>> def fill(runs, out, bar):
    ...     out["x"][:] = np.arange(runs.start, runs.stop)[:, None]
    >>> integrate_runs(fill, n_runs=3, batch=2, shape=(1,), variables=("x",),
    ...                dtype=torch.float32, steps_per_batch=1, unit="step", progress=False)
    {'x': array([[0.],
           [1.],
           [2.]], dtype=float32)}
    """
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    out = {name: np.empty((n_runs, *shape), dtype=np_dtype) for name in variables}
    total = steps_per_batch * -(-n_runs // batch)
    with tqdm(total=total, disable=not progress, unit=unit) as bar:
        for lo in range(0, n_runs, batch):
            runs = slice(lo, min(lo + batch, n_runs))
            integrate_batch(runs, {name: array[runs] for name, array in out.items()}, bar)
    return out


def datetime_axis(start: str, seconds: np.ndarray) -> np.ndarray:
    """``datetime64[ns]`` times ``seconds`` after the ISO datetime ``start`` (rounded to ns).

    Examples
    --------
    >>> datetime_axis("2026-01-01", np.array([0.0, 1.5]))
    array(['2026-01-01T00:00:00.000000000', '2026-01-01T00:00:01.500000000'],
          dtype='datetime64[ns]')
    """
    return np.datetime64(start, "ns") + np.round(seconds * 1e9).astype("timedelta64[ns]")


def to_dataset(
    fields: Mapping[str, np.ndarray],
    dims: tuple[str, ...],
    coords: Mapping[str, tuple],
    var_attrs: Mapping[str, dict],
    params: Mapping[str, tuple[np.ndarray, dict]],
    attrs: dict,
) -> xr.Dataset:
    """The CF-labelled Dataset of a simulator's output.

    Parameters
    ----------
    fields : mapping of str to numpy.ndarray
        Output of each variable, dims ``dims`` (the first ``run``).
    dims : tuple of str
        Dimensions of every variable.
    coords : mapping
        Coordinates after ``run`` (which is added first), as ``(dims, values, attrs)``.
    var_attrs : mapping of str to dict
        Attributes of each variable, in output order.
    params : mapping of str to (numpy.ndarray, dict)
        Per-run parameters, added as ``run`` coordinates after the others.
    attrs : dict
        Global attributes.

    Examples
    --------
    >>> ds = to_dataset({"x": np.zeros((2, 3))}, ("run", "time"),
    ...                 {"time": ("time", np.arange(3.0), {})}, {"x": {"units": "1"}},
    ...                 {"F": (np.array([8.0, 9.0]), {})}, {"title": "demo"})
    >>> list(ds.coords), dict(ds.sizes)
    (['run', 'time', 'F'], {'run': 2, 'time': 3})
    """
    n_runs = next(iter(fields.values())).shape[0]
    all_coords = {"run": ("run", np.arange(n_runs), RUN_ATTRS), **coords}
    data = {name: (dims, fields[name], attrs_) for name, attrs_ in var_attrs.items()}
    ds = xr.Dataset(data, coords=all_coords, attrs=attrs)
    return ds.assign_coords(
        {name: ("run", value, param_attrs) for name, (value, param_attrs) in params.items()}
    )
