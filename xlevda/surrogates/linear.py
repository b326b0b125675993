"""Closed-form fit of the linear LDNet: cosine projection, POD, DMD and kernel regression.

Torch only.  For an :class:`~xlevda.surrogates.ldnet.LDNetModel` with
:class:`~xlevda.surrogates.config.LinearDynamicsConfig` dynamics and a
:class:`~xlevda.surrogates.config.CosineDecoderConfig` decoder, :func:`fit_linear`
sets every weight from the training frames without gradient descent:

1. each frame is projected by least squares onto the cosine series of the decoder
   on the box of the training points (in the coordinates of an orthonormal basis
   of the series at those points, where distances are the fields' over the points);
2. the mean field is the decoder's bias; the ``latent_dim - 1`` leading proper
   orthogonal modes of the centred frames (all channels stacked; a thin singular
   value decomposition) are its modes, so the latent ``c`` of a frame is its POD
   coefficients;
3. ``c_{k+1} = M c_k + m`` is fitted by least squares over all consecutive
   training frames (dynamic mode decomposition with an affine term), giving
   ``A = (M - I) / dt`` and ``a = m / dt``;
4. the first frame's ``c_0(u)`` is interpolated over the training parameters by
   Gaussian kernel ridge regression, the width chosen on the validation runs'
   first frames, giving ``g = c_0 / dt``;
5. with ``LinearDynamicsConfig.refit`` (the default) steps 1-4 are repeated on the
   training and validation runs together, with the chosen width: the validation
   runs choose the one hyperparameter, then inform the model like the others.

The fit is exact for data that lie in the span of the modes and evolve linearly
(tested); otherwise each step is the least-squares optimum of its part.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.config import CosineDecoderConfig, LinearDynamicsConfig
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.networks import CosineDecoder, ImpulseLinearField

__all__ = ["fit_linear", "point_box"]


def point_box(points: Tensor) -> tuple[Tensor, Tensor]:
    """The box ``[lo, hi]`` of a point set: each coordinate's range, widened by half
    the spacing of its two outermost distinct values at either end.

    On a cell-centred regular grid the box is then the grid's cells, and the cosine
    series on it is the discrete cosine transform; on a smoothly stretched axis
    (latitudes of a box that is regular in metres) nearly so; for scattered points
    the widening is small.

    Parameters
    ----------
    points : Tensor, shape (P, n_coords)

    Returns
    -------
    lo, hi : Tensor, shape (n_coords,)

    Examples
    --------
    >>> import torch
    >>> lo, hi = point_box(torch.tensor([[0.5, 0.0], [1.5, 1.0], [2.5, 3.0]]))
    >>> lo.tolist(), hi.tolist()
    ([0.0, -0.5], [3.0, 4.0])
    """
    if points.dim() != 2 or points.shape[0] < 2:
        raise ShapeError(f"points must have shape (P >= 2, n_coords), got {tuple(points.shape)}")
    lo, hi = [], []
    for j in range(points.shape[1]):
        values = torch.unique(points[:, j].double())
        if values.numel() < 2:
            raise ShapeError(f"coordinate {j} of the training points takes a single value")
        lo.append(float(values[0] - (values[1] - values[0]) / 2))
        hi.append(float(values[-1] + (values[-1] - values[-2]) / 2))
    return torch.tensor(lo, dtype=points.dtype), torch.tensor(hi, dtype=points.dtype)


def _kernel(a: Tensor, b: Tensor, width: float) -> Tensor:
    return torch.exp(-torch.cdist(a, b).square() / (2 * width**2))


def _relative(pred: Tensor, truth: Tensor) -> float:
    return float((pred - truth).norm() / truth.norm().clamp_min(1e-300))


class _Reduced(NamedTuple):
    """Mean, modes and linear step of a set of frames, in orthonormal cosine coordinates."""

    mean: Tensor  # (C F,)
    modes: Tensor  # (C F, r), orthonormal columns
    step: Tensor  # (r, r): M
    offset: Tensor  # (r,): m
    first: Tensor  # (N, r): the runs' first-frame latents
    report: dict[str, float]


def _orthonormal_features(decoder: CosineDecoder, points: Tensor) -> tuple[Tensor, Tensor]:
    """``Q, R`` (float64) with ``Q R`` the cosine features at ``points`` (P, F), ``Q`` orthonormal.

    Frames are reduced in the coordinates ``w = Q^T y``, where the Euclidean norm is
    the field's norm over the points (so the modes are the field-space POD); the
    decoder's cosine coefficients are ``R^{-1} w``.
    """
    feats = decoder.features(points.double())
    q, r = torch.linalg.qr(feats)
    sv = torch.linalg.svdvals(r)
    if not sv[-1] > 1e-10 * sv[0]:
        raise ConfigError(
            f"CosineDecoderConfig.n_terms={decoder.n_terms}: the {feats.shape[1]} cosine "
            f"products are not independent on the {feats.shape[0]} training points; use fewer "
            "terms per coordinate"
        )
    return q, r


def _reduce(q: Tensor, values: Tensor, rank: int) -> _Reduced:
    n_ch = values.shape[-1]
    w = torch.einsum("pf,ntpc->ntcf", q, values.double()).flatten(-2)  # (N, T, C F)
    back = torch.einsum("ntcf,pf->ntpc", w.unflatten(-1, (n_ch, -1)), q)
    report = {"cosine_projection_error": _relative(back, values.double())}
    mean = w.mean(dim=(0, 1))
    centred = w - mean
    modes = torch.linalg.svd(centred.flatten(0, 1), full_matrices=False).Vh[:rank].T
    latent = centred @ modes  # (N, T, r)
    report["mode_projection_error"] = _relative(latent @ modes.T, centred)
    before = torch.cat([latent[:, :-1], torch.ones_like(latent[:, :-1, :1])], -1).flatten(0, 1)
    after = latent[:, 1:].flatten(0, 1)
    solution = torch.linalg.lstsq(before, after).solution  # (r + 1, r): [M^T; m]
    report["linear_step_residual"] = _relative(before @ solution, after)
    step = solution[:-1].T
    report["spectral_radius"] = float(torch.linalg.eigvals(step).abs().max())
    return _Reduced(mean, modes, step, solution[-1], latent[:, 0], report)


def fit_linear(
    model: LDNetModel,
    train: tuple[Tensor, Tensor, Tensor],
    val: tuple[Tensor, Tensor, Tensor],
) -> dict[str, Any]:
    """Set every weight of a linear LDNet in closed form (see the module docstring).

    The kernel width is chosen on the validation runs with everything fitted on
    the training runs.  With ``LinearDynamicsConfig.refit`` every part is then
    fitted again on the training and validation runs together, with that width.

    Parameters
    ----------
    model : LDNetModel
        With ``LinearDynamicsConfig`` dynamics (``n_centres`` the number of runs
        fitted: training runs, plus validation runs with ``refit``) and a
        ``CosineDecoderConfig`` decoder; changed in place.
    train, val : tuple of Tensor
        ``(params (N, d_u), points (P, n_coords), values (N, T, P, C))`` in normalized
        units, as :func:`xlevda.surrogates.pod.load_frames` returns them, sharing
        one point set and frame count.

    Returns
    -------
    dict
        What the fit found: the chosen kernel width (normalized parameter units),
        the first frame's relative error on the validation runs (fitted on the
        training runs only), and of the final fit the relative projection errors on
        the cosine series and on the modes, the relative residual of the linear
        step and the spectral radius of ``M``.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.config import (
    ...     CosineDecoderConfig, LDNetConfig, LinearDynamicsConfig)
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> x = torch.linspace(-1, 1, 16)[:, None]
    >>> u = torch.linspace(-1, 1, 9)[:, None]
    >>> frames = torch.stack([torch.exp(-((x - v) ** 2) / 0.1) * 0.9**k
    ...                       for v in u[:, 0] for k in range(4)]).reshape(9, 4, 16, 1)
    >>> config = LDNetConfig(latent_dim=9, learnable_dt=False,
    ...                      dynamics=LinearDynamicsConfig(n_centres=9),
    ...                      decoder=CosineDecoderConfig(n_terms=16))
    >>> model = LDNetModel(config, SurrogateSchema.minimal(4))
    >>> report = fit_linear(model, (u[::2], x, frames[::2]), (u[1::2], x, frames[1::2]))
    >>> report["linear_step_residual"] < 1e-6
    True
    """
    dyn, dec = model.config.dynamics, model.config.decoder
    if not isinstance(dyn, LinearDynamicsConfig) or not isinstance(dec, CosineDecoderConfig):
        raise ConfigError(
            "fit_linear needs LDNetConfig(dynamics=LinearDynamicsConfig(...), "
            f"decoder=CosineDecoderConfig(...)), got dynamics={dyn!r}, decoder={dec!r}"
        )
    field, decoder = model.dynamics, model.decoder
    assert isinstance(field, ImpulseLinearField) and isinstance(decoder, CosineDecoder)
    u, points, values = train
    u_val, points_val, values_val = val
    if not torch.equal(points_val, points) or values_val.shape[1:] != values.shape[1:]:
        raise ShapeError(
            "the validation runs must share the training runs' points and frames: got points "
            f"{tuple(points_val.shape)} and frames {tuple(values_val.shape)} against "
            f"{tuple(points.shape)} and {tuple(values.shape)}"
        )
    n_fit = u.shape[0] + (u_val.shape[0] if dyn.refit else 0)
    if field.centres.shape[0] != n_fit:
        raise ConfigError(
            f"LinearDynamicsConfig.n_centres is {field.centres.shape[0]}, expected one centre "
            f"per fitted run ({n_fit}: training runs"
            + (" plus validation runs, refit=True)" if dyn.refit else ")")
        )
    n_runs, n_frames, _, n_ch = values.shape
    rank = model.latent_dim - 1
    if n_frames < 2:
        raise ShapeError(f"the linear fit needs at least 2 frames per run, got {n_frames}")
    n_feat = decoder.weight.shape[-1]
    limit = min(n_runs * n_frames - 1, n_ch * n_feat)
    if rank > limit:
        raise ConfigError(
            f"LDNetConfig.latent_dim - 1 = {rank} modes exceed what the training frames span "
            f"about their mean: at most min(frames - 1 = {n_runs * n_frames - 1}, channels x "
            f"cosine terms = {n_ch * n_feat}) = {limit}"
        )
    with torch.no_grad():
        lo, hi = point_box(points)
        decoder.lo.copy_(lo)
        decoder.hi.copy_(hi)

    q, r_factor = _orthonormal_features(decoder, points)
    u, u_val = u.double(), u_val.double()
    reduced = _reduce(q, values, rank)
    w_val = torch.einsum("pf,npc->ncf", q, values_val[:, 0].double()).flatten(-2)
    first_val = (w_val - reduced.mean) @ reduced.modes
    gaps = torch.cdist(u, u) + torch.diag(torch.full((n_runs,), math.inf, dtype=u.dtype))
    spacing = float(gaps.min(1).values.quantile(0.5)) if n_runs > 1 else 1.0
    if not spacing > 0:
        raise ConfigError(
            "the training runs' parameters have a median nearest-neighbour distance of 0 "
            "(repeated parameters): the kernel width is a multiple of it"
        )
    best: tuple[float, float] | None = None
    for factor in dyn.widths:
        width = factor * spacing
        kernel = _kernel(u, u, width) + dyn.ridge * torch.eye(n_runs, dtype=u.dtype)
        weights = torch.linalg.solve(kernel, reduced.first)
        err = _relative(_kernel(u_val, u, width) @ weights, first_val)
        if best is None or err < best[1]:
            best = (width, err)
    assert best is not None
    width, err = best
    if dyn.refit:
        u = torch.cat([u, u_val])
        reduced = _reduce(q, torch.cat([values, values_val]), rank)
    kernel = _kernel(u, u, width) + dyn.ridge * torch.eye(u.shape[0], dtype=u.dtype)
    weights = torch.linalg.solve(kernel, reduced.first)
    report: dict[str, Any] = {"kernel_width": width, "first_frame_validation_error": err}
    report.update(reduced.report)

    dt = float(field.step)
    with torch.no_grad():
        field.A.copy_((reduced.step - torch.eye(rank, dtype=u.dtype)) / dt)
        field.a.copy_(reduced.offset / dt)
        field.weights.copy_(weights / dt)
        field.centres.copy_(u)
        field.width.fill_(width)
        to_cosine = torch.linalg.inv(r_factor)  # w -> cosine coefficients R^{-1} w
        modes = reduced.modes.unflatten(0, (n_ch, n_feat))  # (C, F, r)
        decoder.weight.zero_()
        decoder.weight[:, :rank].copy_((to_cosine @ modes).transpose(1, 2))  # (C, r, F)
        decoder.weight[:, -1].copy_(reduced.mean.unflatten(-1, (n_ch, n_feat)) @ to_cosine.T)
    return report
