"""Errors over the values that are present: NaN targets are missing values (torch only).

A training source with missing values (``FrameSource.missing``, e.g. ``LDNet.fit(...,
missing="mask")``) serves NaN where a target is missing (a gap, or a variable absent at a
point); every loss and error of the package sums over the present values only.  Without
NaN these are the plain sums and means, computed the same way as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlevda.errors import VariableError

__all__ = ["mean_square", "present", "project", "square_error"]


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


def project(basis: Tensor, values: Tensor, *, min_eig: float = 1e-6) -> Tensor:
    """Least-squares coefficients of fields in an orthonormal basis, over the values present.

    For each run, frame and channel, ``w = argmin |Q_S w - y_S|`` over the points ``S``
    where ``y`` is present: ``Q^T y`` for complete fields (``Q`` orthonormal), else the
    normal equations ``(Q_S^T Q_S) w = Q_S^T y_S``, solved run by run.

    Parameters
    ----------
    basis : Tensor, shape (P, F)
        ``Q``, orthonormal columns over the points.
    values : Tensor, shape (N, T, P, C)
        Fields, NaN where missing.
    min_eig : float
        Smallest eigenvalue of ``Q_S^T Q_S`` accepted (1 with every point present): below
        it, the present points do not determine the coefficients.

    Returns
    -------
    Tensor, shape (N, T, C, F)
        In ``basis``'s dtype.

    Raises
    ------
    VariableError
        A field's present points do not determine its coefficients.

    Examples
    --------
    >>> import torch
    >>> q = torch.linalg.qr(torch.rand(6, 2, dtype=torch.float64))[0]
    >>> y = (q @ torch.tensor([1.0, -2.0], dtype=torch.float64))[None, None, :, None]
    >>> w = project(q, y.masked_fill(torch.arange(6)[:, None] < 2, float("nan")))
    >>> [round(v, 9) for v in w.flatten().tolist()]
    [1.0, -2.0]
    """
    ok = present(values)
    v = values.to(basis.dtype)
    if bool(ok.all()):
        return torch.einsum("pf,ntpc->ntcf", basis, v)
    filled = torch.where(ok, v, torch.zeros_like(v))
    rhs = torch.einsum("pf,ntpc->ntcf", basis, filled)
    out = torch.empty_like(rhs)
    for r in range(values.shape[0]):
        weight = ok[r].to(basis.dtype)  # (T, P, C)
        gram = torch.einsum("pf,pg,tpc->tcfg", basis, basis, weight)
        smallest = torch.linalg.eigvalsh(gram)[..., 0]
        if bool((smallest < min_eig).any()):
            t, c = (int(i) for i in torch.nonzero(smallest < min_eig)[0])
            raise VariableError(
                f"run {r}, frame {t}, channel {c}: its {int(weight[t, :, c].sum())} present "
                f"values do not determine the {basis.shape[1]} coefficients of the basis "
                "(too many gaps there); fill them, or use fewer basis terms"
            )
        out[r] = torch.linalg.solve(gram, rhs[r].unsqueeze(-1)).squeeze(-1)
    return out
