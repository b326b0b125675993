"""Errors over the values that are present: NaN targets are missing values (torch only).

A training source with missing values (``FrameSource.missing``, e.g. ``LDNet.fit(...,
missing="mask")``) serves NaN where a target is missing (a gap, or a variable absent at a
point); every loss and error of the package sums over the present values only.  Without
NaN these are the plain sums and means, computed the same way as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["mean_square", "present", "square_error"]


def present(values: Tensor) -> Tensor:
    """Where ``values`` are not missing (not NaN), as a boolean tensor."""
    return ~torch.isnan(values)


def square_error(pred: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """``(pred - values)^2`` with 0 where ``values`` is NaN, and ``values`` with 0 there.

    Both are differentiable in ``pred``; a missing value gives a zero gradient.

    Examples
    --------
    >>> import torch
    >>> err, truth = square_error(torch.tensor([1.0, 2.0]), torch.tensor([0.0, float("nan")]))
    >>> err.tolist(), truth.tolist()
    ([1.0, 0.0], [0.0, 0.0])
    """
    ok = present(values)
    if bool(ok.all()):
        return (pred - values).square(), values
    filled = torch.where(ok, values, torch.zeros_like(values))
    return torch.where(ok, pred - filled, torch.zeros_like(pred)).square(), filled


def mean_square(pred: Tensor, values: Tensor) -> Tensor:
    """Mean of ``(pred - values)^2`` over the values present (0 if none is).

    Examples
    --------
    >>> import torch
    >>> float(mean_square(torch.tensor([1.0, 5.0, 3.0]), torch.tensor([0.0, float("nan"), 1.0])))
    2.5
    """
    ok = present(values)
    if bool(ok.all()):
        return (pred - values).square().mean()
    err, _ = square_error(pred, values)
    return err.sum() / ok.sum().clamp_min(1)
