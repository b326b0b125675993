"""Closed-form fit of the linear LDNet: cosine projection, POD, DMD and kernel regression.

Torch only.  For an :class:`~xlevda.surrogates.ldnet.LDNetModel` with
:class:`~xlevda.surrogates.config.LinearDynamicsConfig` dynamics and a
:class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` decoder, :func:`fit_linear`
sets every weight from the training frames without gradient descent:

1. each frame is projected by least squares onto the cosine series of the decoder
   on the box of the training points (in the coordinates of an orthonormal basis
   of the series at those points, where distances are the fields' over the points;
   a frame with missing values, NaN, over the points where it has values:
   :func:`~xlevda.surrogates.masking.project`);
2. the mean field is the decoder's bias; the ``latent_dim - 1`` leading proper
   orthogonal modes of the centred frames (all channels stacked; the eigenvectors
   of their Gram matrix, gathered over chunks of runs) are its modes, so the latent
   ``c`` of a frame is its POD coefficients;
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
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.config import LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import CosineDecoderConfig
from xlevda.surrogates.decoders import CosineDecoder
from xlevda.surrogates.frames import FrameBatch, FrameSource, TensorFrameSource
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import project, square_error
from xlevda.surrogates.vector_fields import ImpulseLinearField

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


_BATCH_RUNS = 16
"""Runs projected at a time (the transient arrays are a few times their frames)."""

Frames = FrameSource | tuple[Tensor, Tensor, Tensor]
"""Runs as a :class:`~xlevda.surrogates.frames.FrameSource` or ``(params, points, values)``."""


def _orthonormal_features(decoder: CosineDecoder, points: Tensor) -> tuple[Tensor, Tensor]:
    """``Q, R`` (float64) with ``Q R`` the cosine features at ``points`` (P, F), ``Q`` orthonormal.

    Frames are reduced in the coordinates ``w = Q^T y``, where the Euclidean norm is
    the field's norm over the points (so the modes are the field-space POD); the
    decoder's cosine coefficients are ``R^{-1} w``.
    """
    feats = decoder.features(points.double())
    if feats.shape[0] < feats.shape[1]:
        raise ConfigError(
            f"CosineDecoderConfig.n_terms={decoder.n_terms} gives {feats.shape[1]} cosine "
            f"products, more than the {feats.shape[0]} training points; use at most "
            f"{int(feats.shape[0] ** (1 / points.shape[-1]))} terms per coordinate"
        )
    q, r = torch.linalg.qr(feats)
    sv = torch.linalg.svdvals(r)
    if not sv[-1] > 1e-10 * sv[0]:
        raise ConfigError(
            f"CosineDecoderConfig.n_terms={decoder.n_terms}: the {feats.shape[1]} cosine "
            f"products are not independent on the {feats.shape[0]} training points; use fewer "
            "terms per coordinate"
        )
    return q, r


class _Moments(NamedTuple):
    """What one pass over runs gathers, in the orthonormal coordinates ``w``."""

    params: Tensor  # (N, d_u)
    first: Tensor  # (N, C F): each run's first frame
    total: Tensor  # (C F,): sum of all frames
    gram: Tensor  # (C F, C F): sum of w w^T
    count: int  # frames
    energy: float  # sum of |y|^2
    lost: float  # sum of |y - Q w|^2


def _batches(source: FrameSource, points: Tensor) -> Iterator[FrameBatch]:
    gen = torch.Generator().manual_seed(0)
    for batch in source.batches(_BATCH_RUNS, None, gen, False):
        if not torch.equal(batch.points, points):
            raise ShapeError(
                "the validation runs must share the training runs' points and frames (one "
                f"point set): got points {tuple(batch.points.shape)} that differ from the "
                f"first training run's {tuple(points.shape)}"
            )
        yield batch


def _moments(q: Tensor, source: FrameSource, points: Tensor) -> _Moments:
    params, first, total, gram = [], [], 0.0, 0.0
    count, energy, lost = 0, 0.0, 0.0
    for batch in _batches(source, points):
        w = project(q, batch.values).flatten(-2)
        flat = w.flatten(0, 1)
        params.append(batch.params.double())
        first.append(w[:, 0].clone())  # not a view: it would keep the chunk alive
        total = total + flat.sum(0)
        gram = gram + flat.T @ flat
        count += flat.shape[0]
        values = batch.values.double()
        back = torch.einsum("pf,ntcf->ntpc", q, w.unflatten(-1, (values.shape[-1], -1)))
        error, truth = square_error(back, values)  # over the values present
        energy += float(truth.square().sum())
        lost += float(error.sum())
    return _Moments(
        torch.cat(params),
        torch.cat(first),
        torch.as_tensor(total),
        torch.as_tensor(gram),
        count,
        energy,
        lost,
    )


def _combine(a: _Moments, b: _Moments) -> _Moments:
    return _Moments(
        torch.cat([a.params, b.params]),
        torch.cat([a.first, b.first]),
        a.total + b.total,
        a.gram + b.gram,
        a.count + b.count,
        a.energy + b.energy,
        a.lost + b.lost,
    )


def _modes(m: _Moments, rank: int) -> tuple[Tensor, Tensor]:
    """Mean (C F,) and leading POD modes (C F, r) of ``m``'s frames."""
    mean = m.total / m.count
    _, vecs = torch.linalg.eigh(m.gram - m.count * torch.outer(mean, mean))
    return mean, vecs[:, -rank:].flip(-1)


def fit_linear(model: LDNetModel, train: Frames, val: Frames) -> dict[str, Any]:
    """Set every weight of a linear LDNet in closed form (see the module docstring).

    The kernel width is chosen on the validation runs with everything fitted on
    the training runs.  With ``LinearDynamicsConfig.refit`` every part is then
    fitted again on the training and validation runs together, with that width.
    The runs are read a few at a time, twice or three times: a first pass
    gathers each run's first frame and the frames' mean and Gram matrix in the
    cosine coordinates, from which come the modes; a last pass the latent
    trajectories, from which the linear step comes by normal equations gathered
    over chunks.  Memory is that of the latent trajectories (``N T (latent_dim -
    1)`` numbers, float64) and of a chunk of runs, not of the data.

    Parameters
    ----------
    model : LDNetModel
        With ``LinearDynamicsConfig`` dynamics (``n_centres`` the number of runs
        fitted: training runs, plus validation runs with ``refit``) and a
        ``CosineDecoderConfig`` decoder; changed in place.
    train, val : FrameSource or tuple of Tensor
        Runs as a :class:`~xlevda.surrogates.frames.FrameSource`, or ``(params (N,
        d_u), points (P, n_coords), values (N, T, P, C))`` in normalized units; all
        runs share one point set and frame count.

    Returns
    -------
    dict
        What the fit found: the chosen kernel width (normalized parameter units);
        the first frame's relative error on the validation runs, fitted on the
        training runs only and measured on the centred first frames projected onto
        the modes (the part the kernel regression is responsible for); and of the
        final fit the relative projection errors on the cosine series and on the
        modes, the relative residual of the linear step and the spectral radius of
        ``M``.

    Notes
    -----
    The fit runs on the CPU in float64 and writes the model's weights in its own
    dtype; fit a model on the CPU and move it afterwards.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.config import LDNetConfig, LinearDynamicsConfig
    >>> from xlevda.surrogates.decoder_configs import CosineDecoderConfig
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
    train_src = train if not isinstance(train, tuple) else TensorFrameSource(*train)
    val_src = val if not isinstance(val, tuple) else TensorFrameSource(*val)
    points, rank = _check_runs(model, dyn, train_src, val_src)
    n_ch, n_feat = decoder.weight.shape[0], decoder.weight.shape[-1]
    q, r_factor = _fit_box(decoder, points)

    # the kernel width, from the training runs' modes and first frames
    m_train = _moments(q, train_src, points)
    m_val = _moments(q, val_src, points)
    width, err = _choose_width(m_train, m_val, rank, dyn)

    # the final fit: modes, latent trajectories, linear step, first frames
    fitted = _combine(m_train, m_val) if dyn.refit else m_train
    mean, modes = _modes(fitted, rank)
    sources = (train_src, val_src) if dyn.refit else (train_src,)
    latent, mode_error = _latent(q, sources, points, mean, modes, fitted.params.shape[0])
    solution, step_residual = _linear_step(latent)
    step = solution[:-1].T
    u = fitted.params
    kernel = _kernel(u, u, width) + dyn.ridge * torch.eye(u.shape[0], dtype=u.dtype)
    weights = torch.linalg.solve(kernel, latent[:, 0])
    report = {
        "kernel_width": width,
        "first_frame_validation_error": err,
        "cosine_projection_error": math.sqrt(fitted.lost / max(fitted.energy, 1e-300)),
        "mode_projection_error": mode_error,
        "linear_step_residual": step_residual,
        "spectral_radius": float(torch.linalg.eigvals(step).abs().max()),
    }

    dt = float(field.step)
    with torch.no_grad():
        field.A.copy_((step - torch.eye(rank, dtype=u.dtype)) / dt)
        field.a.copy_(solution[-1] / dt)
        field.weights.copy_(weights / dt)
        field.centres.copy_(u)
        field.width.fill_(width)
        to_cosine = torch.linalg.inv(r_factor)  # w -> cosine coefficients R^{-1} w
        per_channel = modes.unflatten(0, (n_ch, n_feat))  # (C, F, r)
        decoder.weight.zero_()
        decoder.weight[:, :rank].copy_((to_cosine @ per_channel).transpose(1, 2))  # (C, r, F)
        decoder.weight[:, -1].copy_(mean.unflatten(-1, (n_ch, n_feat)) @ to_cosine.T)
    return report


def _check_runs(
    model: LDNetModel, dyn: LinearDynamicsConfig, train_src: FrameSource, val_src: FrameSource
) -> tuple[Tensor, int]:
    """The runs' shared points (P, n_coords) and the number of modes, ``latent_dim - 1``,
    after checking the runs against the model."""
    field, decoder = model.dynamics, model.decoder
    assert isinstance(field, ImpulseLinearField) and isinstance(decoder, CosineDecoder)
    if val_src.n_frames != train_src.n_frames:
        raise ShapeError(
            "the validation runs must share the training runs' points and frames: got "
            f"{val_src.n_frames} frames per run against {train_src.n_frames}"
        )
    n_fit = train_src.n_runs + (val_src.n_runs if dyn.refit else 0)
    if field.centres.shape[0] != n_fit:
        raise ConfigError(
            f"LinearDynamicsConfig.n_centres is {field.centres.shape[0]}, expected one centre "
            f"per fitted run ({n_fit}: training runs"
            + (" plus validation runs, refit=True)" if dyn.refit else ")")
        )
    n_runs, n_frames = train_src.n_runs, train_src.n_frames
    if n_frames < 2:
        raise ShapeError(f"the linear fit needs at least 2 frames per run, got {n_frames}")
    first_batch = next(iter(train_src.batches(1, None, torch.Generator().manual_seed(0), False)))
    points, n_ch = first_batch.points, first_batch.values.shape[-1]
    if n_ch != decoder.weight.shape[0]:
        raise ShapeError(
            f"the training runs have {n_ch} channels, the model's schema "
            f"{decoder.weight.shape[0]} ({', '.join(model.schema.variables)})"
        )
    rank = model.latent_dim - 1
    n_feat = decoder.weight.shape[-1]
    limit = min(n_runs * n_frames - 1, n_ch * n_feat)
    if rank > limit:
        raise ConfigError(
            f"LDNetConfig.latent_dim - 1 = {rank} modes exceed what the training frames span "
            f"about their mean: at most min(frames - 1 = {n_runs * n_frames - 1}, channels x "
            f"cosine terms = {n_ch * n_feat}) = {limit}"
        )
    if points.dim() != 2:
        raise ShapeError(f"the linear fit needs points (P, n_coords), got {tuple(points.shape)}")
    return points, rank


def _fit_box(decoder: CosineDecoder, points: Tensor) -> tuple[Tensor, Tensor]:
    """Set the decoder's box to :func:`point_box` of ``points`` and return
    :func:`_orthonormal_features` there; on an error the box is left as it was."""
    old_box = decoder.lo.clone(), decoder.hi.clone()
    with torch.no_grad():
        lo, hi = point_box(points)
        decoder.lo.copy_(lo)
        decoder.hi.copy_(hi)
    try:
        return _orthonormal_features(decoder, points)
    except ConfigError:
        with torch.no_grad():
            decoder.lo.copy_(old_box[0])
            decoder.hi.copy_(old_box[1])
        raise


def _choose_width(
    m_train: _Moments, m_val: _Moments, rank: int, dyn: LinearDynamicsConfig
) -> tuple[float, float]:
    """The kernel width (of ``dyn.widths`` times the training parameters' median
    nearest-neighbour distance) whose regression of the first frames' mode coefficients,
    fitted on the training runs, has the lowest validation error; that error."""
    mean, modes = _modes(m_train, rank)
    first, first_val = (m_train.first - mean) @ modes, (m_val.first - mean) @ modes
    u, u_val = m_train.params, m_val.params
    n_runs = u.shape[0]
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
        weights = torch.linalg.solve(kernel, first)
        err = _relative(_kernel(u_val, u, width) @ weights, first_val)
        if best is None or err < best[1]:
            best = (width, err)
    assert best is not None
    return best


def _latent(
    q: Tensor,
    sources: tuple[FrameSource, ...],
    points: Tensor,
    mean: Tensor,
    modes: Tensor,
    n_runs: int,
) -> tuple[Tensor, float]:
    """Mode coefficients of every frame of the ``n_runs`` runs of ``sources`` (N, T, r),
    float64, and the relative error of the centred frames' projection onto the modes."""
    n_frames = sources[0].n_frames
    latent = torch.empty(n_runs, n_frames, modes.shape[1], dtype=torch.float64)
    filled, centred_sq, lost_sq = 0, 0.0, 0.0
    for src in sources:
        for b in _batches(src, points):
            w = project(q, b.values).flatten(-2) - mean
            block = latent[filled : filled + w.shape[0]]
            torch.matmul(w, modes, out=block)
            filled += w.shape[0]
            centred_sq += float(w.square().sum())
            lost_sq += float((w - block @ modes.T).square().sum())
    return latent, math.sqrt(lost_sq / max(centred_sq, 1e-300))


def _linear_step(latent: Tensor) -> tuple[Tensor, float]:
    """``[M^T; m]`` (r + 1, r) of ``c_{k+1} = M c_k + m`` by least squares over the
    trajectories ``latent`` (N, T, r), from normal equations gathered over chunks of
    runs, and the step's relative residual."""
    rank = latent.shape[-1]

    def pairs(chunk: Tensor) -> tuple[Tensor, Tensor]:
        before = torch.cat([chunk[:, :-1], torch.ones_like(chunk[:, :-1, :1])], -1)
        return before.flatten(0, 1), chunk[:, 1:].flatten(0, 1)

    normal = torch.zeros(rank + 1, rank + 1, dtype=torch.float64)
    rhs = torch.zeros(rank + 1, rank, dtype=torch.float64)
    for chunk in latent.split(_BATCH_RUNS * 16):
        before, after = pairs(chunk)
        normal += before.T @ before
        rhs += before.T @ after
    solution = torch.linalg.lstsq(normal, rhs).solution  # (r + 1, r): [M^T; m]
    resid_sq = target_sq = 0.0
    for chunk in latent.split(_BATCH_RUNS * 16):
        before, after = pairs(chunk)
        resid_sq += float((before @ solution - after).square().sum())
        target_sq += float(after.square().sum())
    return solution, math.sqrt(resid_sq / max(target_sq, 1e-300))
