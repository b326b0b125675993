"""Closed-form fit of the polynomial LDNet: operator inference in the compressed coordinates.

Torch only.  For an :class:`~xlevda.surrogates.ldnet.LDNetModel` with
:class:`~xlevda.surrogates.dynamics_configs.PolynomialDynamicsConfig` dynamics and a
:class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` decoder,
:func:`fit_polynomial` sets every weight from the training frames without gradient
descent:

1. the decoder (cosine series, mean and proper orthogonal modes) and the first
   frame's kernel ridge regression over the parameters are those of the linear fit
   (:mod:`xlevda.surrogates.compression`): the latent ``c`` of a frame is its POD
   coefficients;
2. the step ``c_{k+1} - c_k = Phi(c_k, u) W`` is fitted over all consecutive frames of
   the training runs by ridge least squares, ``Phi`` the features of
   :class:`~xlevda.surrogates.polynomial.PolynomialField` (``c``, the products
   ``u^alpha c``, 1, ``u^alpha`` and the unique products ``c_i c_j`` of the leading
   modes), from normal equations gathered over chunks of runs;
3. the three ridge weights (``A`` and ``a``; the parameter terms; the quadratic
   terms), each relative to the mean diagonal of its block of the normal matrix, are
   chosen on the grids of the config by the validation runs' rollouts: every validation run is
   rolled out from its kernel-predicted first frame over all its frames (all runs
   at once) and compared with its frames' coefficients in the training runs' modes;
4. with ``refit`` (the default) steps 1-2 are repeated on the training and
   validation runs together with the chosen width and ridge weights.

The fit is exact for data that lie in the span of the modes and follow such a step
(tested); otherwise each part is the regularized least-squares optimum of its part.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError
from xlevda.surrogates.compression import (
    BATCH_RUNS,
    Frames,
    as_source,
    basis,
    combine,
    gaussian_kernel,
    kernel_weights,
    latent_trajectories,
    prepare,
    width_value,
    write_model,
)
from xlevda.surrogates.decoder_configs import CosineDecoderConfig
from xlevda.surrogates.dynamics_configs import PolynomialDynamicsConfig
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.polynomial import (
    PolynomialField,
    monomial_exponents,
    monomials,
    pair_products,
)

__all__ = ["fit_polynomial", "step_features"]


def step_features(c: Tensor, u: Tensor, param_degree: int, quadratic_modes: int) -> Tensor:
    """``Phi(c, u)``: ``[c, u^alpha c (alpha major), 1, u^alpha, c_i c_j]``, (..., n_features).

    ``c`` (..., r) and ``u`` (..., d_u) with the same leading dims; the first
    ``r (1 + n_monomials) + 1 + n_monomials`` columns are the terms linear in ``c`` or
    constant, the rest the quadratic ones.

    Examples
    --------
    >>> import torch
    >>> step_features(torch.tensor([2.0, 3.0]), torch.tensor([10.0]), 1, 1).tolist()
    [2.0, 3.0, 20.0, 30.0, 1.0, 10.0, 4.0]
    """
    m = monomials(u, param_degree)
    parts = [c, (m.unsqueeze(-1) * c.unsqueeze(-2)).flatten(-2), torch.ones_like(c[..., :1]), m]
    if quadratic_modes:
        parts.append(pair_products(c, quadratic_modes))
    return torch.cat(parts, -1)


class _Normal(NamedTuple):
    """Normal equations ``G W = R`` of the step, and ``G``'s mean diagonal per term group."""

    gram: Tensor  # (n_f, n_f)
    rhs: Tensor  # (n_f, r)
    groups: Tensor  # (n_f,) int64: 0 for A and a, 1 the parameter terms, 2 the quadratic
    scales: Tensor  # (3,): mean diagonal of each group's block (0 for an empty group)
    target_sq: float  # |D|^2: the increments' squared norm


def _normal(latent: Tensor, params: Tensor, dyn: PolynomialDynamicsConfig) -> _Normal:
    """Normal equations of ``latent[:, k+1] - latent[:, k] = Phi(latent[:, k], u) W`` over
    the runs (N, T, r) with parameters ``params`` (N, d_u), gathered over chunks."""
    gram = rhs = torch.zeros((), dtype=latent.dtype)
    target_sq = 0.0
    for chunk, u in zip(latent.split(BATCH_RUNS), params.split(BATCH_RUNS), strict=True):
        before = chunk[:, :-1]
        u_k = u.unsqueeze(1).expand(-1, before.shape[1], -1)
        phi = step_features(before, u_k, dyn.param_degree, dyn.quadratic_modes).flatten(0, 1)
        gram = gram + phi.T @ phi
        increment = (chunk[:, 1:] - before).flatten(0, 1)
        rhs = rhs + phi.T @ increment
        target_sq += float(increment.square().sum())
    rank, n_mono = latent.shape[-1], len(monomial_exponents(params.shape[-1], dyn.param_degree))
    n_quad = dyn.quadratic_modes * (dyn.quadratic_modes + 1) // 2
    sizes = [rank, n_mono * rank, 1, n_mono, n_quad]  # the column blocks of step_features
    groups = torch.repeat_interleave(torch.tensor([0, 1, 0, 1, 2]), torch.tensor(sizes))
    diag = gram.diagonal()
    scales = torch.stack([diag[groups == g].mean().nan_to_num(0.0) for g in range(3)])
    return _Normal(gram, rhs, groups, scales, target_sq)


def _solve(normal: _Normal, ridge: tuple[float, float, float]) -> Tensor:
    """``W`` (n_f, r) of the normal equations with the three (relative) ridge weights."""
    weights = torch.tensor(ridge, dtype=normal.gram.dtype) * normal.scales
    penalty = weights[normal.groups]
    system = normal.gram + torch.diag(penalty)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(normal.rhs, factor)
    return torch.linalg.lstsq(system, normal.rhs, driver="gelsd").solution  # singular: min norm


def _rollout_error(
    coef: Tensor, start: Tensor, u: Tensor, truth: Tensor, dyn: PolynomialDynamicsConfig
) -> float:
    """Squared error of the fitted step's trajectories from ``start`` (M, r) against
    ``truth`` (M, T, r), all frames (``inf`` where a trajectory is not finite)."""
    c, total = start, float((start - truth[:, 0]).square().sum())
    for k in range(1, truth.shape[1]):
        c = c + step_features(c, u, dyn.param_degree, dyn.quadratic_modes) @ coef
        total += float((c - truth[:, k]).square().sum())
    return total if math.isfinite(total) else math.inf


def _choose_ridge(
    normal: _Normal, start: Tensor, u: Tensor, truth: Tensor, dyn: PolynomialDynamicsConfig
) -> tuple[tuple[float, float, float], float]:
    """The ridge weights of the config's grids whose step, from ``normal``, rolls the
    validation runs out (from ``start``, with parameters ``u``) closest to ``truth``; its
    squared error."""
    param = dyn.param_regularization if dyn.param_degree else (0.0,)
    quadratic = dyn.quadratic_regularization if dyn.quadratic_modes else (0.0,)
    best: tuple[tuple[float, float, float], float] | None = None
    for ridge in itertools.product(dyn.regularization, param, quadratic):
        error = _rollout_error(_solve(normal, ridge), start, u, truth, dyn)
        if best is None or error < best[1]:
            best = (ridge, error)
    assert best is not None
    return best


def fit_polynomial(model: LDNetModel, train: Frames, val: Frames) -> dict[str, Any]:
    """Set every weight of a polynomial LDNet in closed form (see the module docstring).

    The kernel width and the ridge weights are chosen on the validation runs with
    everything fitted on the training runs.  With ``PolynomialDynamicsConfig.refit``
    every part is then fitted again on the training and validation runs together.
    The runs are read a few at a time: once each to gather the moments from which
    the modes come, once each for their latent trajectories in the training runs'
    modes, and with ``refit`` once more for those in the modes of all runs.  Memory
    is that of the latent trajectories and of the normal matrix (``n_features^2``
    numbers, float64: ``n_features = (latent_dim - 1) (1 + n_monomials) + 1 +
    n_monomials + q (q + 1) / 2``).

    Parameters
    ----------
    model : LDNetModel
        With ``PolynomialDynamicsConfig`` dynamics (``n_centres`` the number of runs
        fitted: training runs, plus validation runs with ``refit``) and a
        ``CosineDecoderConfig`` decoder; changed in place.
    train, val : FrameSource or tuple of Tensor
        Runs as a :class:`~xlevda.surrogates.frames.FrameSource`, or ``(params (N,
        d_u), points (P, n_coords), values (N, T, P, C))`` in normalized units; all
        runs share one point set and frame count.

    Returns
    -------
    dict
        What the fit found: the chosen kernel width (normalized parameter units) and
        ridge weights; the first frame's relative validation error (as
        :func:`~xlevda.surrogates.linear.fit_linear`); ``validation_rollout_error``,
        the validation runs' relative error over all their frames in the training
        runs' mode coefficients (rolled out from their kernel-predicted first frame,
        relative to their frames' norm; the projection errors come on top); and of
        the final fit the relative projection errors on the cosine series and on the
        modes and the relative residual of the step.

    Notes
    -----
    The fit runs on the CPU in float64 and writes the model's weights in its own
    dtype; fit a model on the CPU and move it afterwards.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.config import LDNetConfig, PolynomialDynamicsConfig
    >>> from xlevda.surrogates.decoder_configs import CosineDecoderConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> x = torch.linspace(-1, 1, 16)[:, None]
    >>> u = torch.linspace(-1, 1, 9)[:, None]
    >>> frames = torch.stack([torch.exp(-((x - 0.3 * v * k) ** 2) / 0.5)
    ...                       for v in u[:, 0] for k in range(4)]).reshape(9, 4, 16, 1)
    >>> config = LDNetConfig(latent_dim=9, learnable_dt=False,
    ...                      dynamics=PolynomialDynamicsConfig(n_centres=9),
    ...                      decoder=CosineDecoderConfig(n_terms=16))
    >>> model = LDNetModel(config, SurrogateSchema.minimal(4))
    >>> report = fit_polynomial(model, (u[::2], x, frames[::2]), (u[1::2], x, frames[1::2]))
    >>> report["validation_rollout_error"] < 0.05
    True
    """
    dyn, dec = model.config.dynamics, model.config.decoder
    if not isinstance(dyn, PolynomialDynamicsConfig) or not isinstance(dec, CosineDecoderConfig):
        raise ConfigError(
            "fit_polynomial needs LDNetConfig(dynamics=PolynomialDynamicsConfig(...), "
            f"decoder=CosineDecoderConfig(...)), got dynamics={dyn!r}, decoder={dec!r}"
        )
    field = model.dynamics
    assert isinstance(field, PolynomialField)
    train_src, val_src = as_source(train), as_source(val)
    prep = prepare(model, field.linear, dyn, train_src, val_src)

    # the ridge weights, from the training runs' modes and step
    own = basis(prep, (train_src,), prep.m_train)
    truth, _ = latent_trajectories(
        prep.q, (val_src,), prep.points, own.mean, own.modes, val_src.n_runs
    )
    u_val = prep.m_val.params
    weights = kernel_weights(own.params, own.latent[:, 0], prep.width, dyn.ridge)
    start = gaussian_kernel(u_val, own.params, prep.width) @ weights
    normal = _normal(own.latent, own.params, dyn)
    ridge, error_sq = _choose_ridge(normal, start, u_val, truth, dyn)

    # the final fit
    if dyn.refit:
        sources = (train_src, val_src)
        fit = basis(prep, sources, combine(prep.m_train, prep.m_val))
        normal = _normal(fit.latent, fit.params, dyn)
    else:
        fit = own
    coef = _solve(normal, ridge)
    report = {
        "kernel_width": width_value(prep.width),
        "ridge": ridge[0],
        "param_ridge": ridge[1],
        "quadratic_ridge": ridge[2],
        "first_frame_validation_error": prep.first_error,
        "validation_rollout_error": math.sqrt(error_sq / float(prep.m_val.gram.trace())),
        "cosine_projection_error": fit.cosine_error,
        "mode_projection_error": fit.mode_error,
        "step_residual": _residual(normal, coef),
    }
    write_model(model, field.linear, prep, fit, dyn.ridge)
    _write_step(field, coef)
    return report


def _write_step(field: PolynomialField, coef: Tensor) -> None:
    """Set ``A, a`` (of ``field.linear``), ``N``, ``b`` and ``H`` from the step's
    coefficients ``W`` (n_f, r) in the column order of :func:`step_features`."""
    rank, n_mono = coef.shape[1], field.forcing.shape[0]
    parts = coef.split([rank, n_mono * rank, 1, n_mono, field.quadratic.shape[1]])
    scale = 1 / float(field.step)
    with torch.no_grad():
        field.linear.A.copy_(parts[0].T * scale)
        field.bilinear.copy_(parts[1].T * scale)
        field.linear.a.copy_(parts[2][0] * scale)
        field.forcing.copy_(parts[3] * scale)
        field.quadratic.copy_(parts[4].T * scale)


def _residual(normal: _Normal, coef: Tensor) -> float:
    """Relative residual of the step on the fitted frames, ``|Phi W - D| / |D|`` with ``D``
    the increments ``c_{k+1} - c_k``, from the normal equations."""
    error_sq = float((coef * (normal.gram @ coef)).sum() - 2 * (coef * normal.rhs).sum())
    return math.sqrt(max(error_sq + normal.target_sq, 0.0) / max(normal.target_sq, 1e-300))
