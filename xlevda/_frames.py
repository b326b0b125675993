"""Frames from xarray Datasets: training runs for :meth:`xlevda.LDNet.fit` (and the examples),
and one frame of fields for :meth:`xlevda.LDNet.encode_frame`."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import xarray as xr

from xlevda._convert import coord_points, find_time, spatial_layout, to_points
from xlevda.errors import VariableError
from xlevda.surrogates.frames import FrameBatch, TensorFrameSource
from xlevda.surrogates.schema import SurrogateSchema

__all__ = ["DatasetFrameSource", "frame_values", "latent_array"]


class DatasetFrameSource:
    """Training frames from an xarray Dataset, loaded chunk of runs by chunk of runs.

    Implements the :class:`~xlevda.surrogates.frames.FrameSource` protocol.  A
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
    keep : array of bool, optional
        The spatial points to serve (C order over the spatial dimensions), e.g. all but
        land; default every point.
    missing : bool
        Serve NaN values (missing values the loss leaves out) instead of refusing them.
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
        keep: np.ndarray | None = None,
        missing: bool = False,
    ) -> None:
        self._ds = ds
        self._schema = schema
        self._runs = np.asarray(runs, dtype=np.int64)
        self._run_dim = run_dim
        self._time = find_time(ds)
        self._layout = spatial_layout(ds, schema.coords)
        self._dtype = dtype
        points = schema.embed(coord_points(ds, self._layout))[0]
        self._keep = np.ones(len(points), bool) if keep is None else np.asarray(keep, bool)
        self._points = torch.as_tensor(points[self._keep], dtype=dtype)
        self.missing = missing
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
        flat = arr.reshape(arr.shape[0], arr.shape[1], -1, arr.shape[-1])[:, :, self._keep]
        values = s.output_norm.normalize(flat)
        if not (np.isfinite(values) | (self.missing & np.isnan(values))).all():
            raise VariableError(
                "training data hold infinite values"
                if self.missing
                else "training data hold NaN or infinite values"
            )
        params = s.param_norm.normalize(
            np.stack([np.asarray(sub[p].values, float) for p in s.params], -1)
        )
        return TensorFrameSource(
            torch.as_tensor(params, dtype=self._dtype),
            self._points,
            torch.as_tensor(values, dtype=self._dtype),
            missing=self.missing,
        )

    def batches(
        self,
        batch_size: int,
        points_per_frame: int | None,
        generator: torch.Generator,
        shuffle: bool,
    ) -> Iterator[FrameBatch]:
        """Yield batches of ``batch_size`` runs; see :class:`TensorFrameSource`.

        A batch's ``runs`` index the source's runs in ascending order along ``run_dim``.
        """
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
            offset = g * self._chunk_runs  # run indices count the sorted runs of the source
            for batch in chunk.batches(batch_size, points_per_frame, generator, shuffle):
                yield batch._replace(runs=batch.runs + offset)


def latent_array(initial_latent, latent_dim: int) -> xr.DataArray:
    """``initial_latent`` as a DataArray over ``(..., "latent")``, checked."""
    if initial_latent is None:
        raise VariableError(
            "initial_latent is required: this surrogate learns per-run initial states; fit "
            "them to a frame with LDNet.encode_frame(fields) and pass the result"
        )
    latent = initial_latent
    if not isinstance(latent, xr.DataArray):
        arr = np.asarray(latent, dtype=float)
        if arr.ndim not in (1, 2):
            raise VariableError(
                f"initial_latent has shape {arr.shape}: pass (latent_dim,), (run, latent_dim) "
                "or a DataArray with a 'latent' dimension"
            )
        latent = xr.DataArray(arr, dims=(*("run",) * (arr.ndim - 1), "latent"))
    if latent.sizes.get("latent") != latent_dim:
        raise VariableError(
            f"initial_latent must have a 'latent' dimension of size latent_dim={latent_dim}, "
            f"got dims {dict(latent.sizes)}"
        )
    if not np.isfinite(latent.values).all():
        raise VariableError("initial_latent holds NaN or infinite values")
    return latent


def frame_values(
    fields: xr.Dataset, schema: SurrogateSchema
) -> tuple[np.ndarray, np.ndarray, np.ndarray, xr.DataArray]:
    """Normalized values (K, P, C), weights (1 where given and finite), points (P, n)
    and a DataArray holding the batch dims and coords of ``fields``."""
    if not isinstance(fields, xr.Dataset):
        raise VariableError(f"fields must be an xarray Dataset, got {type(fields).__name__}")
    names = [v for v in schema.variables if v in fields.data_vars]
    if not names:
        raise VariableError(
            f"fields hold none of the surrogate's variables {list(schema.variables)}: got "
            f"{sorted(map(str, fields.data_vars))}"
        )
    if "time" in fields.dims:
        if fields.sizes["time"] != 1:
            raise VariableError(f"fields hold {fields.sizes['time']} times: give one frame")
        fields = fields.isel(time=0, drop=True)
    points, layout = to_points(fields, schema)
    first = fields[names[0]]
    batch_dims = tuple(d for d in first.dims if d not in layout.dims)
    batch = first.isel({d: 0 for d in layout.dims}, drop=True).reset_coords(drop=True)
    batch = xr.zeros_like(batch).assign_coords(
        {k: v for k, v in first.coords.items() if set(v.dims) <= set(batch_dims)}
    )
    k = int(np.prod([first.sizes[d] for d in batch_dims], dtype=int))
    values = np.zeros((k, len(points), schema.n_channels))
    weight = np.zeros_like(values)
    for name in names:
        da = fields[name]
        if set(da.dims) != {*batch_dims, *layout.dims}:
            raise VariableError(
                f"field {name!r} has dims {da.dims}, expected {(*batch_dims, *layout.dims)} "
                f"(those of {names[0]!r})"
            )
        c = schema.variables.index(name)
        raw = da.transpose(*batch_dims, *layout.dims).values.reshape(k, -1).astype(float)
        ok = np.isfinite(raw)
        if not ok.any(axis=1).all():
            raise VariableError(f"field {name!r} is NaN everywhere for some member")
        norm = (raw - schema.output_norm.offset[c]) / schema.output_norm.scale[c]
        values[..., c] = np.where(ok, norm, 0.0)
        weight[..., c] = ok
    return values, weight, points, batch
