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

_CHUNK_BYTES = 64 * 1024**2
"""Bound on the transient memory of :func:`project`'s masked frames, solved in chunks."""


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
    normal equations ``(Q_S^T Q_S) w = Q_S^T y_S``, solved frame by frame (Cholesky).

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
    out = torch.einsum("pf,ntpc->ntcf", basis, filled)  # Q_S^T y_S; w where nothing is missing
    n_pts, n_feat = basis.shape
    per_frame = values.shape[-1] * n_feat * n_pts * basis.element_size()
    chunk = max(1, _CHUNK_BYTES // per_frame)
    eye = torch.eye(n_feat, dtype=basis.dtype)
    frames = torch.nonzero(~ok.all(-1).all(-1))  # (run, frame) pairs with missing values
    for rows in frames.split(chunk):
        missing = (~ok[rows[:, 0], rows[:, 1]]).transpose(1, 2).to(basis.dtype)  # (B, C, P)
        # Q_S^T Q_S = I - Q_M^T Q_M over the missing points M, per frame and channel
        gram = eye - (basis.T * missing[..., None, :]) @ basis  # (B, C, F, F)
        # all its eigenvalues above min_eig <=> gram - min_eig I positive definite
        info = torch.linalg.cholesky_ex(gram - min_eig * eye).info
        if bool(info.any()):
            b, c = (int(i) for i in torch.nonzero(info)[0])
            r, t = rows[b].tolist()
            raise VariableError(
                f"run {r}, frame {t}, channel {c}: its {int(ok[r, t, :, c].sum())} present "
                f"values do not determine the {n_feat} coefficients of the basis "
                "(too many gaps there); fill them, or use fewer basis terms"
            )
        rhs = out[rows[:, 0], rows[:, 1]].unsqueeze(-1)
        solved = torch.cholesky_solve(rhs, torch.linalg.cholesky(gram)).squeeze(-1)
        out[rows[:, 0], rows[:, 1]] = solved
    return out
