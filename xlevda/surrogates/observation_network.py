"""The fixed observation network an LD-EnSF encoder reads: points, channels and frames.

Torch only.  An :class:`~xlevda.surrogates.encoder.ObservationEncoder` is trained
for one network and stores it; :meth:`ObservationNetwork.difference` tells
another network from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from xlevda.errors import ObservationError
from xlevda.validate import check_int

__all__ = ["ObservationNetwork"]

_POINT_ATOL = 1e-6
"""Normalized coordinates closer than this are the same observation point."""


def _as_points(points: object) -> tuple[tuple[float, ...], ...]:
    try:
        array = np.asarray(
            points.detach().cpu() if isinstance(points, Tensor) else points, dtype=float
        )
    except (TypeError, ValueError):
        raise ObservationError(
            f"ObservationNetwork points must be numbers of shape (P, n_coords), got {points!r}"
        ) from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ObservationError(
            f"ObservationNetwork points must have shape (P, n_coords) with P, n_coords >= 1, "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ObservationError("ObservationNetwork points hold NaN or infinite coordinates")
    return tuple(tuple(float(v) for v in row) for row in array)


@dataclass(frozen=True)
class ObservationNetwork:
    """Fixed observation points, observed channels and observation frames.

    Observation ``j`` is taken at surrogate frame ``first_frame + j * frame_stride``
    (frame ``k`` is the latent state after ``k + 1`` Euler steps from
    ``s_{-1} = 0``), at every point and channel.

    Attributes
    ----------
    points : tuple of tuple of float, shape (P, n_coords)
        Normalized coordinates (as the decoder sees them); any array-like is
        accepted and stored as tuples.
    channels : tuple of int
        Observed decoder channels, distinct, in the order of the flattened input.
    first_frame : int
        Frame of the first observation (>= 0).
    frame_stride : int
        Frames between observations (>= 1).

    Examples
    --------
    >>> net = ObservationNetwork(points=[[0.0, 0.5], [0.5, 0.0]], channels=(0,))
    >>> net.n_points, net.n_features, net.frames(3).tolist()
    (2, 2, [0, 1, 2])
    """

    points: tuple[tuple[float, ...], ...]
    channels: tuple[int, ...]
    first_frame: int = 0
    frame_stride: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _as_points(self.points))
        channels = tuple(self.channels) if isinstance(self.channels, list | tuple) else None
        if (
            not channels
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise ObservationError(
                "ObservationNetwork channels must be a non-empty tuple of distinct channel "
                f"indices >= 0, got {self.channels!r}"
            )
        object.__setattr__(self, "channels", channels)
        check_int("ObservationNetwork.first_frame", self.first_frame, 0)
        check_int("ObservationNetwork.frame_stride", self.frame_stride, 1)

    @property
    def n_points(self) -> int:
        """``P``."""
        return len(self.points)

    @property
    def n_coords(self) -> int:
        """Coordinates per point."""
        return len(self.points[0])

    @property
    def n_channels(self) -> int:
        """``C``, the number of observed channels."""
        return len(self.channels)

    @property
    def n_features(self) -> int:
        """``P * C``, the length of one flattened observation vector."""
        return self.n_points * self.n_channels

    def points_tensor(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """The points as a tensor of shape (P, n_coords)."""
        return torch.tensor(self.points, dtype=dtype or torch.get_default_dtype(), device=device)

    def frames(self, n_obs: int) -> Tensor:
        """Surrogate frames of the first ``n_obs`` observations, a LongTensor (n_obs,)."""
        return self.first_frame + self.frame_stride * torch.arange(n_obs)

    def difference(self, other: ObservationNetwork) -> str | None:
        """What differs from ``other`` (in words), or ``None`` if they are the same network.

        Points are the same when their normalized coordinates agree within ``1e-6``.

        Examples
        --------
        >>> a = ObservationNetwork(points=[[0.0]], channels=(0,))
        >>> a.difference(ObservationNetwork(points=[[0.0]], channels=(1,)))
        'channels (0,) != (1,)'
        """
        if self.channels != other.channels:
            return f"channels {self.channels} != {other.channels}"
        if (self.first_frame, self.frame_stride) != (other.first_frame, other.frame_stride):
            return (
                f"observation frames (first_frame, frame_stride) "
                f"{(self.first_frame, self.frame_stride)} != "
                f"{(other.first_frame, other.frame_stride)}"
            )
        if (self.n_points, self.n_coords) != (other.n_points, other.n_coords):
            return (
                f"points of shape {(self.n_points, self.n_coords)} != "
                f"{(other.n_points, other.n_coords)}"
            )
        gap = np.abs(np.asarray(self.points) - np.asarray(other.points)).max(axis=1)
        if (gap > _POINT_ATOL).any():
            p = int(np.argmax(gap > _POINT_ATOL))
            return f"point {p} at {self.points[p]} != {other.points[p]}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)
