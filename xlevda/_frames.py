"""Training frames from an xarray Dataset, for :meth:`xlevda.LDNet.fit` and the examples."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr

from xlevda._convert import coord_points, find_time, spatial_layout
from xlevda.errors import VariableError
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.training import FrameBatch, TensorFrameSource

__all__ = ["DatasetFrameSource"]


class DatasetFrameSource:
    """Training frames from an xarray Dataset, loaded chunk of runs by chunk of runs.

    Implements the :class:`~xlevda.surrogates.training.FrameSource` protocol.  A
    dask-backed Dataset larger than memory is read ``chunk_runs`` runs at a time;
    when the selected runs fit in ``memory_budget`` bytes they are loaded once.

    Parameters
    ----------
    ds : Dataset
        Training data with dims ``(run_dim, time, *spatial)``.
    schema : SurrogateSchema
        From :func:`build_schema`.
    runs : array of int
        Indices along ``run_dim`` this source serves (e.g. the training split).
    run_dim : str
    chunk_runs : int
        Runs read per chunk when streaming.
    memory_budget : int
        Bytes (float32) below which all selected runs are held in memory.
    dtype : torch.dtype
    """

    def __init__(
        self,
        ds: xr.Dataset,
        schema: SurrogateSchema,
        runs: np.ndarray,
        *,
        run_dim: str = "run",
        chunk_runs: int = 16,
        memory_budget: int = 2 * 1024**3,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self._ds = ds
        self._schema = schema
        self._runs = np.asarray(runs, dtype=np.int64)
        self._run_dim = run_dim
        self._time = find_time(ds)
        self._layout = spatial_layout(ds, schema.coords)
        self._dtype = dtype
        self._points = torch.as_tensor(schema.embed(coord_points(ds, self._layout))[0], dtype=dtype)
        n_pts = self._points.shape[0]
        nbytes = len(self._runs) * schema.n_frames * n_pts * schema.n_channels * 4
        self._chunk_runs = len(self._runs) if nbytes <= memory_budget else max(1, chunk_runs)
        self._cache: TensorFrameSource | None = None
        self.n_runs = len(self._runs)
        self.n_frames = schema.n_frames

    def _load(self, runs: np.ndarray) -> TensorFrameSource:
        s = self._schema
        sub = self._ds.isel({self._run_dim: np.sort(runs)})
        arr = (
            sub[list(s.variables)]
            .to_array("channel")
            .transpose(self._run_dim, self._time, *self._layout.dims, "channel")
            .values
        )
        values = s.output_norm.normalize(arr.reshape(arr.shape[0], arr.shape[1], -1, arr.shape[-1]))
        if not np.isfinite(values).all():
            raise VariableError("training data hold NaN or infinite values")
        params = s.param_norm.normalize(
            np.stack([np.asarray(sub[p].values, float) for p in s.params], -1)
        )
        return TensorFrameSource(
            torch.as_tensor(params, dtype=self._dtype),
            self._points,
            torch.as_tensor(values, dtype=self._dtype),
        )

    def batches(
        self,
        batch_size: int,
        points_per_frame: int | None,
        generator: torch.Generator,
        shuffle: bool,
    ) -> Iterator[FrameBatch]:
        """Yield batches of ``batch_size`` runs; see :class:`TensorFrameSource`."""
        if self._chunk_runs >= self.n_runs:
            if self._cache is None:
                self._cache = self._load(self._runs)
            yield from self._cache.batches(batch_size, points_per_frame, generator, shuffle)
            return
        # Contiguous groups of runs (in storage order) are read whole, in random order:
        # reading is then sequential per group, and batches are shuffled within a group.
        runs = np.sort(self._runs)
        groups = [runs[i : i + self._chunk_runs] for i in range(0, len(runs), self._chunk_runs)]
        order = (
            torch.randperm(len(groups), generator=generator).tolist()
            if shuffle
            else range(len(groups))
        )
        for g in order:
            chunk = self._load(groups[g])
            yield from chunk.batches(batch_size, points_per_frame, generator, shuffle)
