"""The Gaspari-Cohn localization taper shared by the localized filters (torch only)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["gaspari_cohn"]


def gaspari_cohn(distance: Tensor, radius: float) -> Tensor:
    """Gaspari-Cohn (1999) fifth-order taper, 1 at distance 0 and 0 from ``radius`` on.

    Parameters
    ----------
    distance : Tensor
        Non-negative distances, any shape.
    radius : float
        Support radius (twice the Gaspari-Cohn half-width ``c``), > 0.

    Returns
    -------
    Tensor
        Same shape as ``distance``.

    Examples
    --------
    >>> import torch
    >>> [round(v, 6) for v in gaspari_cohn(torch.tensor([0.0, 1.0, 2.0]), 2.0).tolist()]
    [1.0, 0.208333, 0.0]
    """
    z = 2.0 * distance / radius
    inner = (((-0.25 * z + 0.5) * z + 0.625) * z - 5.0 / 3.0) * z**2 + 1.0
    outer = ((((z / 12.0 - 0.5) * z + 0.625) * z + 5.0 / 3.0) * z - 5.0) * z + 4.0
    outer = outer - 2.0 / (3.0 * z.clamp_min(1.0))
    return torch.where(z <= 1.0, inner, torch.where(z < 2.0, outer, torch.zeros_like(z)))
