"""The weighted observation misfit that every cost and fused decoder pass computes."""

from __future__ import annotations

from torch import Tensor

__all__ = ["weighted_misfit"]


def weighted_misfit(decoded: Tensor, data: Tensor, sqrt_weight: Tensor) -> Tensor:
    """``sum((sqrt_weight * (decoded - data))**2)`` over points and channels.

    The definition that a fused decoder pass and a surrogate's
    ``misfit_prepared`` compute faster.  ``decoded``, ``data``, ``sqrt_weight``
    (..., P, C), leading dims broadcast -> (...,).

    Examples
    --------
    >>> import torch
    >>> weighted_misfit(torch.ones(2, 3, 1), torch.zeros(3, 1), torch.full((3, 1), 2.0))
    tensor([12., 12.])
    """
    return (sqrt_weight * (decoded - data)).square().sum((-2, -1))
