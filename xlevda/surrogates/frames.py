"""Frames of simulated runs as training sources (torch only).

Data reach :func:`~xlevda.surrogates.training.train` through the :class:`FrameSource`
protocol: batches of whole runs (parameters, query points per frame, targets at those
points), all in normalized units.  :class:`TensorFrameSource` is the in-memory
implementation; a chunked (e.g. zarr-backed) source can delegate each loaded chunk of
runs to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from xlevda.errors import ShapeError, VariableError

__all__ = ["FrameBatch", "FrameSource", "TensorFrameSource"]


class FrameBatch(NamedTuple):
    """A batch of whole runs, decoded at sampled query points.

    Attributes
    ----------
    params : Tensor, shape (B, d_u)
        Normalized parameters of ``B`` runs.
    points : Tensor, shape (T, P, n_coords) or (P, n_coords)
        Normalized query points per frame (the same for every run of the batch),
        or shared by all frames.
    values : Tensor, shape (B, T, P, C)
        Normalized targets at those points.
    runs : Tensor, shape (B,), optional
        Each run's index among the source's runs (0 to ``n_runs - 1``): the row of
        its learned initial state (:class:`~xlevda.surrogates.config.LearnedInitialState`).
    """

    params: Tensor
    points: Tensor
    values: Tensor
    runs: Tensor | None = None


@runtime_checkable
class FrameSource(Protocol):
    """Where training frames come from.

    Attributes
    ----------
    n_runs : int
        Number of runs.
    n_frames : int
        Frames per run.

    A source may also have ``missing = True``: its values then hold NaN where a
    target is missing, and every loss and error leaves those out
    (:mod:`xlevda.surrogates.masking`).
    """

    n_runs: int
    n_frames: int

    def batches(
        self,
        batch_size: int,
        points_per_frame: int | None,
        generator: torch.Generator,
        shuffle: bool,
    ) -> Iterator[FrameBatch]:
        """One pass over all runs in batches of at most ``batch_size`` runs.

        ``points_per_frame=None`` means every point; otherwise that many points
        per frame drawn without replacement with ``generator``.
        """
        ...


class TensorFrameSource:
    """In-memory :class:`FrameSource` over runs sharing one set of points.

    Parameters
    ----------
    params : Tensor, shape (N, d_u)
        Normalized parameters of ``N`` runs.
    points : Tensor, shape (N_pts, n_coords)
        Normalized coordinates of the points every run is stored at.
    values : Tensor, shape (N, T, N_pts, C)
        Normalized fields (finite, or NaN where missing with ``missing=True``).
    missing : bool
        Accept NaN in ``values``: missing values, left out of the loss and the errors.

    Raises
    ------
    ShapeError
        Shapes disagree or a dimension is empty.
    VariableError
        ``params`` or ``values`` hold NaN (``values``: unless ``missing``) or infinity.

    Examples
    --------
    >>> import torch
    >>> src = TensorFrameSource(torch.zeros(5, 2), torch.zeros(16, 2), torch.zeros(5, 3, 16, 1))
    >>> [b.values.shape for b in src.batches(4, 6, torch.Generator().manual_seed(0), True)]
    [torch.Size([4, 3, 6, 1]), torch.Size([1, 3, 6, 1])]
    """

    def __init__(
        self, params: Tensor, points: Tensor, values: Tensor, *, missing: bool = False
    ) -> None:
        if params.dim() != 2 or points.dim() != 2 or values.dim() != 4:
            raise ShapeError(
                "TensorFrameSource needs params (N, d_u), points (N_pts, n_coords) and values "
                f"(N, T, N_pts, C); got params {tuple(params.shape)}, points "
                f"{tuple(points.shape)}, values {tuple(values.shape)}"
            )
        n, t, n_pts, c = values.shape
        if params.shape[0] != n or points.shape[0] != n_pts:
            raise ShapeError(
                f"values {tuple(values.shape)} (N, T, N_pts, C) disagree with params "
                f"{tuple(params.shape)} (N, d_u) or points {tuple(points.shape)} (N_pts, n_coords)"
            )
        if min(n, t, n_pts, c, params.shape[1], points.shape[1]) == 0:
            raise ShapeError(
                f"TensorFrameSource got an empty dimension: params {tuple(params.shape)}, "
                f"points {tuple(points.shape)}, values {tuple(values.shape)}"
            )
        for name, x in (("params", params), ("points", points), ("values", values)):
            bad = ~torch.isfinite(x)
            if missing and x is values:
                bad &= ~torch.isnan(x)
            if bad.any():
                raise VariableError(
                    f"{name} holds {int(bad.sum())} NaN or infinite values (of {x.numel()})"
                )
        self.params = params
        self.points = points
        self.values = values
        self.n_runs = n
        self.n_frames = t
        self.n_points = n_pts
        self.missing = missing

    def batches(
        self,
        batch_size: int,
        points_per_frame: int | None,
        generator: torch.Generator,
        shuffle: bool,
    ) -> Iterator[FrameBatch]:
        """Batches of runs; see :meth:`FrameSource.batches`.

        With ``points_per_frame`` below the number of points, each frame gets its
        own uniform sample without replacement (points (T, P, n_coords)), shared by
        the runs of the batch; otherwise every point is used (points (N_pts, n_coords)).
        ``generator`` is a CPU generator.
        """
        device = self.values.device
        order = torch.randperm(self.n_runs, generator=generator) if shuffle else None
        for start in range(0, self.n_runs, batch_size):
            stop = min(start + batch_size, self.n_runs)
            runs = (
                order[start:stop].to(device)
                if order is not None
                else torch.arange(start, stop, device=device)
            )
            if points_per_frame is None or points_per_frame >= self.n_points:
                yield FrameBatch(self.params[runs], self.points, self.values[runs], runs)
                continue
            keys = torch.rand(self.n_frames, self.n_points, generator=generator)
            sel = keys.argsort(dim=-1)[:, :points_per_frame].to(device)  # (T, P)
            frames = torch.arange(self.n_frames, device=device)
            values = self.values[runs[:, None, None], frames[None, :, None], sel[None]]
            yield FrameBatch(self.params[runs], self.points[sel], values, runs)
