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

Steps 1, 2 and 4 are shared with the polynomial fit (:mod:`xlevda.surrogates.compression`).
The fit is exact for data that lie in the span of the modes and evolve linearly
(tested); otherwise each step is the least-squares optimum of its part.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from xlevda.errors import ConfigError
from xlevda.surrogates.compression import (
    BATCH_RUNS,
    Frames,
    as_source,
    basis,
    combine,
    point_box,
    prepare,
    width_value,
    write_model,
)
from xlevda.surrogates.config import LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import CosineDecoderConfig
from xlevda.surrogates.decoders import CosineDecoder
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.vector_fields import ImpulseLinearField

__all__ = ["fit_linear", "point_box"]


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
    train_src, val_src = as_source(train), as_source(val)
    # the kernel width, from the training runs' modes and first frames
    prep = prepare(model, field, dyn, train_src, val_src)
    # the final fit: modes, latent trajectories, linear step, first frames
    fitted = combine(prep.m_train, prep.m_val) if dyn.refit else prep.m_train
    fit = basis(prep, (train_src, val_src) if dyn.refit else (train_src,), fitted)
    solution, step_residual = _linear_step(fit.latent)
    step = solution[:-1].T
    report = {
        "kernel_width": width_value(prep.width),
        "first_frame_validation_error": prep.first_error,
        "cosine_projection_error": fit.cosine_error,
        "mode_projection_error": fit.mode_error,
        "linear_step_residual": step_residual,
        "spectral_radius": float(torch.linalg.eigvals(step).abs().max()),
    }
    write_model(model, field, prep, fit, dyn.ridge)
    dt = float(field.step)
    with torch.no_grad():
        field.A.copy_((step - torch.eye(prep.rank, dtype=step.dtype)) / dt)
        field.a.copy_(solution[-1] / dt)
    return report


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
    for chunk in latent.split(BATCH_RUNS * 16):
        before, after = pairs(chunk)
        normal += before.T @ before
        rhs += before.T @ after
    solution = torch.linalg.lstsq(normal, rhs).solution  # (r + 1, r): [M^T; m]
    resid_sq = target_sq = 0.0
    for chunk in latent.split(BATCH_RUNS * 16):
        before, after = pairs(chunk)
        resid_sq += float((before @ solution - after).square().sum())
        target_sq += float(after.square().sum())
    return solution, math.sqrt(resid_sq / max(target_sq, 1e-300))
