"""The compressed coordinates of the closed-form LDNet fits: cosine projection, POD, kernel ridge.

Torch only.  What :func:`xlevda.surrogates.linear.fit_linear` and
:func:`xlevda.surrogates.opinf.fit_polynomial` share (steps 1, 2 and 4 of the
linear fit): each frame is projected by least squares onto the cosine series of
the decoder on the box of the training points (in the coordinates ``w`` of an
orthonormal basis of the series at those points, where distances are the fields'
over the points; a frame with missing values over the points where it has values:
:func:`~xlevda.surrogates.masking.project`); the mean field and the leading proper
orthogonal modes of the centred frames (all channels stacked; the eigenvectors of
their Gram matrix, gathered over chunks of runs) give the decoder, so the latent
``c`` of a frame is its POD coefficients; the first frame's ``c_0(u)`` is
interpolated over the training parameters by Gaussian kernel ridge regression, the
width chosen on the validation runs' first frames.  The fits differ only in the
latent step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.decoders import CosineDecoder
from xlevda.surrogates.dynamics_configs import WIDTH_SCALES, ClosedFormDynamicsConfig
from xlevda.surrogates.frames import FrameBatch, FrameSource, TensorFrameSource
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import project, square_error
from xlevda.surrogates.vector_fields import ImpulseLinearField

__all__ = [
    "BATCH_RUNS",
    "Basis",
    "Frames",
    "Moments",
    "Prepared",
    "as_source",
    "basis",
    "combine",
    "fit_box",
    "gaussian_kernel",
    "kernel_weights",
    "latent_trajectories",
    "moments",
    "point_box",
    "prepare",
    "relative",
    "run_points",
    "width_value",
    "write_model",
]

BATCH_RUNS = 16
"""Runs projected at a time (the transient arrays are a few times their frames)."""

Frames = FrameSource | tuple[Tensor, Tensor, Tensor]
"""Runs as a :class:`~xlevda.surrogates.frames.FrameSource` or ``(params, points, values)``."""


def as_source(runs: Frames) -> FrameSource:
    """``runs`` as a :class:`~xlevda.surrogates.frames.FrameSource`."""
    return runs if not isinstance(runs, tuple) else TensorFrameSource(*runs)


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


Width = float | Tensor
"""A kernel width: one for all parameters, or a tensor (d,) of one per parameter."""


def gaussian_kernel(a: Tensor, b: Tensor, width: Width) -> Tensor:
    """``exp(-|(a_i - b_j) / width|^2 / 2)``: (n, d), (m, d) -> (n, m)."""
    if isinstance(width, Tensor):
        return torch.exp(-torch.cdist(a / width, b / width).square() / 2)
    return torch.exp(-torch.cdist(a, b).square() / (2 * width**2))


def width_value(width: Width) -> float | list[float]:
    """``width`` as JSON: a number, or a list of one per parameter."""
    return width.tolist() if isinstance(width, Tensor) else float(width)


def kernel_weights(u: Tensor, targets: Tensor, width: Width, ridge: float) -> Tensor:
    """Weights (N, k) of the kernel ridge regression of ``targets`` (N, k) on ``u`` (N, d_u):
    the prediction at ``v`` is ``gaussian_kernel(v, u, width) @ weights``."""
    kernel = gaussian_kernel(u, u, width) + ridge * torch.eye(u.shape[0], dtype=u.dtype)
    return torch.linalg.solve(kernel, targets)


def relative(pred: Tensor, truth: Tensor) -> float:
    """``|pred - truth| / |truth|`` (Frobenius)."""
    return float((pred - truth).norm() / truth.norm().clamp_min(1e-300))


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


class Moments(NamedTuple):
    """What one pass over runs gathers, in the orthonormal coordinates ``w``."""

    params: Tensor  # (N, d_u)
    first: Tensor  # (N, C F): each run's first frame
    total: Tensor  # (C F,): sum of all frames
    gram: Tensor  # (C F, C F): sum of w w^T
    count: int  # frames
    energy: float  # sum of |y|^2
    lost: float  # sum of |y - Q w|^2


def _run_batches(source: FrameSource, points: Tensor) -> Iterator[FrameBatch]:
    gen = torch.Generator().manual_seed(0)
    for batch in source.batches(BATCH_RUNS, None, gen, False):
        if not torch.equal(batch.points, points):
            raise ShapeError(
                "the validation runs must share the training runs' points and frames (one "
                f"point set): got points {tuple(batch.points.shape)} that differ from the "
                f"first training run's {tuple(points.shape)}"
            )
        yield batch


def moments(q: Tensor, source: FrameSource, points: Tensor) -> Moments:
    params, first, total, gram = [], [], 0.0, 0.0
    count, energy, lost = 0, 0.0, 0.0
    for batch in _run_batches(source, points):
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
    return Moments(
        torch.cat(params),
        torch.cat(first),
        torch.as_tensor(total),
        torch.as_tensor(gram),
        count,
        energy,
        lost,
    )


def combine(a: Moments, b: Moments) -> Moments:
    return Moments(
        torch.cat([a.params, b.params]),
        torch.cat([a.first, b.first]),
        a.total + b.total,
        a.gram + b.gram,
        a.count + b.count,
        a.energy + b.energy,
        a.lost + b.lost,
    )


def _pod_modes(m: Moments, rank: int) -> tuple[Tensor, Tensor]:
    """Mean (C F,) and leading POD modes (C F, r) of ``m``'s frames."""
    mean = m.total / m.count
    _, vecs = torch.linalg.eigh(m.gram - m.count * torch.outer(mean, mean))
    return mean, vecs[:, -rank:].flip(-1)


def _check_runs(
    model: LDNetModel,
    field: ImpulseLinearField,
    dyn: ClosedFormDynamicsConfig,
    train_src: FrameSource,
    val_src: FrameSource,
) -> tuple[Tensor, int]:
    """The runs' shared points (P, n_coords) and the number of modes, ``latent_dim - 1``,
    after checking the runs against the model (``field`` its impulse)."""
    decoder = model.decoder
    assert isinstance(decoder, CosineDecoder)
    if val_src.n_frames != train_src.n_frames:
        raise ShapeError(
            "the validation runs must share the training runs' points and frames: got "
            f"{val_src.n_frames} frames per run against {train_src.n_frames}"
        )
    n_fit = train_src.n_runs + (val_src.n_runs if dyn.refit else 0)
    if field.centres.shape[0] != n_fit:
        raise ConfigError(
            f"{type(dyn).__name__}.n_centres is {field.centres.shape[0]}, expected one centre "
            f"per fitted run ({n_fit}: training runs"
            + (" plus validation runs, refit=True)" if dyn.refit else ")")
        )
    n_runs, n_frames = train_src.n_runs, train_src.n_frames
    if n_frames < 2:
        raise ShapeError(
            f"the closed-form fit needs at least 2 frames per run, got {n_frames}: for a "
            "gradient-trained LDNet give a neural decoder, e.g. "
            "LDNetConfig(decoder=MLPDecoderConfig())"
        )
    points, n_ch = run_points(train_src)
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
        raise ShapeError(
            f"the closed-form fit needs points (P, n_coords), got {tuple(points.shape)}"
        )
    return points, rank


def run_points(source: FrameSource) -> tuple[Tensor, int]:
    """The first run's points and its number of channels (read from one run)."""
    first_batch = next(iter(source.batches(1, None, torch.Generator().manual_seed(0), False)))
    return first_batch.points, first_batch.values.shape[-1]


def fit_box(decoder: CosineDecoder, points: Tensor) -> tuple[Tensor, Tensor]:
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
    m_train: Moments,
    m_val: Moments,
    train_modes: tuple[Tensor, Tensor],
    dyn: ClosedFormDynamicsConfig,
) -> tuple[Width, float]:
    """The kernel width (of ``dyn.widths`` times the training parameters' median
    nearest-neighbour distance) whose regression of the first frames' mode coefficients,
    fitted on the training runs (mean and modes ``train_modes``), has the lowest
    validation error, refined per parameter with ``kernel="per_parameter"``
    (:func:`_per_parameter`); that error."""
    mean, modes = train_modes
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

    def error(width: Width) -> float:
        weights = kernel_weights(u, first, width, dyn.ridge)
        return relative(gaussian_kernel(u_val, u, width) @ weights, first_val)

    width, err = min(((f * spacing, error(f * spacing)) for f in dyn.widths), key=lambda p: p[1])
    if dyn.kernel == "isotropic":
        return width, err
    return _per_parameter(error, torch.full((u.shape[1],), width, dtype=u.dtype), err)


def _per_parameter(
    error: Callable[[Width], float], width: Tensor, err: float
) -> tuple[Tensor, float]:
    """``width`` (d,) with each entry scaled in turn by the factor of
    :data:`~xlevda.surrogates.dynamics_configs.WIDTH_SCALES` that lowers ``error`` most,
    two sweeps over the parameters; the error."""
    for _ in range(2):
        for j in range(width.shape[0]):
            for factor in WIDTH_SCALES:
                trial = width.clone()
                trial[j] *= factor
                trial_err = error(trial)
                if trial_err < err:
                    width, err = trial, trial_err
    return width, err


def latent_trajectories(
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
        for b in _run_batches(src, points):
            w = project(q, b.values).flatten(-2) - mean
            block = latent[filled : filled + w.shape[0]]
            torch.matmul(w, modes, out=block)
            filled += w.shape[0]
            centred_sq += float(w.square().sum())
            lost_sq += float((w - block @ modes.T).square().sum())
    return latent, math.sqrt(lost_sq / max(centred_sq, 1e-300))


class Prepared(NamedTuple):
    """What both fits compute before their latent step (see :func:`prepare`)."""

    q: Tensor  # (P, F): orthonormal cosine features at the points
    r_factor: Tensor  # (F, F): the features are q @ r_factor
    points: Tensor  # (P, n_coords)
    rank: int  # modes, latent_dim - 1
    m_train: Moments
    m_val: Moments
    train_modes: tuple[Tensor, Tensor]  # mean and modes of the training runs' frames
    width: Width  # the chosen kernel width (one per parameter: a tensor)
    first_error: float  # its validation error on the first frames


def prepare(
    model: LDNetModel,
    field: ImpulseLinearField,
    dyn: ClosedFormDynamicsConfig,
    train_src: FrameSource,
    val_src: FrameSource,
) -> Prepared:
    """Check the runs, set the decoder's box and gather both run sets' moments (one pass
    over each), and choose the kernel width on the validation runs' first frames."""
    decoder = model.decoder
    assert isinstance(decoder, CosineDecoder)
    points, rank = _check_runs(model, field, dyn, train_src, val_src)
    q, r_factor = fit_box(decoder, points)
    m_train = moments(q, train_src, points)
    m_val = moments(q, val_src, points)
    train_modes = _pod_modes(m_train, rank)
    width, err = _choose_width(m_train, m_val, train_modes, dyn)
    return Prepared(q, r_factor, points, rank, m_train, m_val, train_modes, width, err)


class Basis(NamedTuple):
    """The fitted runs in the modes of their frames (see :func:`basis`)."""

    mean: Tensor  # (C F,)
    modes: Tensor  # (C F, r)
    latent: Tensor  # (N, T, r): the runs' mode coefficients
    params: Tensor  # (N, d_u)
    mode_error: float  # relative error of the centred frames' projection onto the modes
    cosine_error: float  # relative error of the frames' projection onto the cosine series


def basis(prep: Prepared, sources: tuple[FrameSource, ...], fitted: Moments) -> Basis:
    """The mean and modes of the frames of ``fitted`` (the moments of ``sources``), and
    the latent trajectories of ``sources`` in them (one more pass over the runs)."""
    same = fitted is prep.m_train  # the training runs' modes, computed once
    mean, modes = prep.train_modes if same else _pod_modes(fitted, prep.rank)
    n_runs = fitted.params.shape[0]
    latent, mode_error = latent_trajectories(prep.q, sources, prep.points, mean, modes, n_runs)
    cosine_error = math.sqrt(fitted.lost / max(fitted.energy, 1e-300))
    return Basis(mean, modes, latent, fitted.params, mode_error, cosine_error)


def write_model(
    model: LDNetModel, field: ImpulseLinearField, prep: Prepared, fit: Basis, ridge: float
) -> None:
    """Set the decoder (mean and modes of ``fit``) and the impulse of ``field`` (the kernel
    ridge regression of the first frames' coefficients with ``prep``'s width); the latent
    step is the caller's."""
    decoder = model.decoder
    assert isinstance(decoder, CosineDecoder)
    weights = kernel_weights(fit.params, fit.latent[:, 0], prep.width, ridge)
    dt = float(field.step)
    n_ch, n_feat = decoder.weight.shape[0], decoder.weight.shape[-1]
    with torch.no_grad():
        field.weights.copy_(weights / dt)
        field.centres.copy_(fit.params)
        field.width.copy_(torch.as_tensor(prep.width, dtype=field.width.dtype))
        to_cosine = torch.linalg.inv(prep.r_factor)  # w -> cosine coefficients R^{-1} w
        per_channel = fit.modes.unflatten(0, (n_ch, n_feat))  # (C, F, r)
        decoder.weight.zero_()
        decoder.weight[:, : prep.rank].copy_((to_cosine @ per_channel).transpose(1, 2))
        decoder.weight[:, -1].copy_(fit.mean.unflatten(-1, (n_ch, n_feat)) @ to_cosine.T)
