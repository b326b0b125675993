"""POD-initialized training of LDNets with a separable decoder.

Torch only.  End-to-end training of a separable decoder
``D(s, xi) = sum_i c_i(s) psi_i(xi) + b(xi)`` from random weights must discover
the spatial basis and the coefficients at once, and decodes every frame at every
point in every step.  This module splits the problem in three cheap stages:

1. :func:`pod_basis`: the best basis shared by all channels (proper orthogonal
   decomposition of the training frames with each frame's spatial mean removed,
   since the decoder already carries a constant column);
2. :func:`fit_basis`: fit the decoder's basis network ``psi`` to those modes,
   scaled by the size of their coefficients (so that the coefficients the network
   must produce all have unit size, and each mode is fitted in proportion to its
   energy);
3. :func:`coefficient_targets` and :func:`train_coefficients`: train the latent
   dynamics and the coefficient network against the least-squares coefficients of
   the frames in the fitted basis.  With ``G = Q R`` the QR factorization of the
   fitted basis at the training points, ``||G c - x||^2 = ||R c - Q^T x||^2 +
   ||x - Q Q^T x||^2`` exactly, so the coefficient loss is the field loss minus a
   constant (the truncation residual) at a cost independent of the number of
   points.

The model is then fine-tuned end to end with
:func:`~xlevda.surrogates.training.train` (or ``LDNet.fit(..., initial=model)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.surrogates.config import TrainConfig
from xlevda.surrogates.decoders import SeparableDecoder
from xlevda.surrogates.frames import FrameSource
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.training import scheduled_lr
from xlevda.validate import check_int, check_real

__all__ = [
    "BasisFitConfig",
    "CoefficientTargets",
    "PODBasis",
    "coefficient_loss",
    "coefficient_targets",
    "fit_basis",
    "load_frames",
    "pod_basis",
    "train_coefficients",
]


def _check_values(values: Tensor) -> None:
    if values.dim() != 4 or min(values.shape) == 0:
        raise ShapeError(
            f"values must have shape (N, T, P, C), non-empty, got {tuple(values.shape)}"
        )


def load_frames(source: FrameSource) -> tuple[Tensor, Tensor, Tensor]:
    """Every frame of every run of ``source`` at every point, in run order.

    Parameters
    ----------
    source : FrameSource
        Runs sharing one point set (e.g. a gridded Dataset's source).

    Returns
    -------
    params : Tensor, shape (N, d_u)
    points : Tensor, shape (P, n_coords)
    values : Tensor, shape (N, T, P, C)

    Raises
    ------
    ShapeError
        The runs do not share one point set.
    VariableError
        A value is missing (NaN; a source with ``missing=True``).

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.frames import TensorFrameSource
    >>> src = TensorFrameSource(torch.zeros(5, 2), torch.zeros(16, 2), torch.zeros(5, 3, 16, 1))
    >>> [x.shape[0] for x in load_frames(src)]
    [5, 16, 5]
    """
    gen = torch.Generator().manual_seed(0)
    batches = list(source.batches(max(source.n_runs, 1), None, gen, False))
    if not batches:
        raise ShapeError("the source yielded no batches")
    points = batches[0].points
    if points.dim() != 2 or any(not torch.equal(b.points, points) for b in batches):
        raise ShapeError(
            "load_frames needs runs that share one point set (points (P, n_coords)), got points "
            f"of shape {tuple(points.shape)}"
        )
    params = torch.cat([b.params for b in batches])
    values = torch.cat([b.values for b in batches])
    n_missing = int(torch.isnan(values).sum())
    if n_missing:
        raise VariableError(
            f"load_frames needs complete frames, got {n_missing} missing values (NaN): the "
            "POD stages take no gaps; land points are left out by the source already"
        )
    return params, points, values


class PODBasis(NamedTuple):
    """Spatial modes shared by all channels, orthogonal to constants.

    Attributes
    ----------
    modes : Tensor, shape (P, r)
        Orthonormal columns, each summing to zero over the points.
    scales : Tensor, shape (r,)
        Root mean square of the snapshots' coefficients on each mode (the
        singular values over ``sqrt(N * T * C)``), decreasing.
    """

    modes: Tensor
    scales: Tensor


def pod_basis(values: Tensor, rank: int) -> PODBasis:
    """Best ``rank``-dimensional spatial basis shared by all channels (plus constants).

    Each snapshot ``x[n, t, :, c]`` has its spatial mean removed (the separable
    decoder's constant column carries it); the modes are the leading right singular
    vectors of the matrix of all such snapshots, ``(N * T * C, P)``, computed in
    float64.  No other ``rank``-dimensional basis plus constants gives a smaller
    total squared projection error over the snapshots.

    Parameters
    ----------
    values : Tensor, shape (N, T, P, C)
        Training frames in normalized units.
    rank : int
        Number of modes, in ``[1, min(N * T * C, P - 1)]``.

    Returns
    -------
    PODBasis
        In the dtype and on the device of ``values``.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 8)
    >>> values = (torch.arange(3.0)[:, None] * torch.sin(6 * x))[None, :, :, None]
    >>> basis = pod_basis(values, 1)
    >>> basis.modes.shape, abs(float(basis.modes.sum())) < 1e-6
    (torch.Size([8, 1]), True)
    """
    _check_values(values)
    n, t, p, c = values.shape
    limit = min(n * t * c, p - 1)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= limit:
        raise ConfigError(
            f"rank must be an integer in [1, {limit}] (snapshots N*T*C={n * t * c}, points "
            f"P={p} minus the constant), got {rank!r}"
        )
    snaps = values.double().permute(0, 1, 3, 2).reshape(n * t * c, p)
    snaps = snaps - snaps.mean(dim=1, keepdim=True)
    _, sv, vh = torch.linalg.svd(snaps, full_matrices=False)
    scales = sv[:rank] / math.sqrt(n * t * c)
    return PODBasis(vh[:rank].T.to(values.dtype), scales.to(values.dtype))


@dataclass(frozen=True)
class BasisFitConfig:
    """Options of :func:`fit_basis`.

    Attributes
    ----------
    steps : int
        Full-batch Adam steps (>= 1).
    lr : float
        Initial learning rate, annealed by a cosine to ``lr * lr_min_factor`` (> 0).
    lr_min_factor : float
        Final learning rate relative to ``lr``, in [0, 1].

    Examples
    --------
    >>> BasisFitConfig(steps=10).lr
    0.001
    """

    steps: int = 1000
    lr: float = 1e-3
    lr_min_factor: float = 0.01

    def __post_init__(self) -> None:
        check_int("BasisFitConfig.steps", self.steps, 1)
        check_real("BasisFitConfig.lr", self.lr, 0.0, low_open=True)
        check_real("BasisFitConfig.lr_min_factor", self.lr_min_factor, 0.0, 1.0)


def _separable(model: LDNetModel) -> SeparableDecoder:
    if not isinstance(model.decoder, SeparableDecoder):
        raise ConfigError(
            "POD training needs a model with a separable decoder "
            f"(LDNetConfig.decoder=SeparableDecoderConfig), got {type(model.decoder).__name__}"
        )
    return model.decoder


def fit_basis(
    model: LDNetModel, points: Tensor, basis: PODBasis, config: BasisFitConfig | None = None
) -> list[float]:
    """Fit the separable decoder's basis network to POD modes (in place).

    The first ``r`` basis functions ``psi_i / sqrt(n_basis)`` (``basis_points``) at
    ``points`` are fitted to ``scales[i] * modes[:, i]`` by full-batch Adam with a
    cosine learning rate on the relative squared error.  The coefficients of the
    training frames in the fitted basis then have unit root mean square (the
    coefficient network need not learn outputs of very different sizes), and the
    fit weights each mode by its energy.  The remaining ``n_basis - r`` functions
    are left free.  Only the basis network is trained.

    Parameters
    ----------
    model : LDNetModel
        With a separable decoder of ``n_basis >= r``.
    points : Tensor, shape (P, n_coords)
        Normalized points the modes are given at.
    basis : PODBasis
        Modes (P, r) and coefficient scales (r,), e.g. from :func:`pod_basis`.
    config : BasisFitConfig, optional

    Returns
    -------
    list of float
        Per step, the relative squared error of the fitted functions.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.decoder_configs import SeparableDecoderConfig
    >>> from xlevda.surrogates.schema import Affine, SurrogateSchema
    >>> one = Affine((0.0,), (1.0,))
    >>> schema = SurrogateSchema(("h",), ({},), one, ("x",), ({},), one, ("a",), ({},), one,
    ...     ((-1.0, 1.0),), "0", 1.0, "s", False, 3)
    >>> cfg = LDNetConfig(decoder=SeparableDecoderConfig(n_basis=2))
    >>> model = LDNetModel(cfg, schema)
    >>> x = torch.linspace(-1, 1, 16)[:, None]
    >>> modes = torch.linalg.qr(torch.cat([x, x**2 - (x**2).mean()], 1))[0]
    >>> losses = fit_basis(model, x, PODBasis(modes, torch.ones(2)), BasisFitConfig(steps=50))
    >>> losses[-1] < losses[0]
    True
    """
    config = BasisFitConfig() if config is None else config
    decoder = _separable(model)
    modes, scales = basis
    if points.dim() != 2 or points.shape[-1] != model.schema.n_coords:
        raise ShapeError(
            f"points must have shape (P, {model.schema.n_coords}), got {tuple(points.shape)}"
        )
    if modes.dim() != 2 or modes.shape[0] != points.shape[0] or scales.shape != modes.shape[1:]:
        raise ShapeError(
            f"basis modes {tuple(modes.shape)} and scales {tuple(scales.shape)} must be "
            f"(P={points.shape[0]}, r) and (r,)"
        )
    r = modes.shape[1]
    if r > decoder.n_basis:
        raise ShapeError(f"basis has {r} modes but the decoder only n_basis={decoder.n_basis}")
    like = model.dt0
    points = points.to(like)
    target = modes.to(like) * scales.to(like) * math.sqrt(decoder.n_basis)
    denom = target.square().sum()
    feats = decoder.fourier(points)
    params = list(decoder.basis.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    sched = TrainConfig(epochs=config.steps, lr=config.lr, lr_min_factor=config.lr_min_factor)
    losses = []
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(sched, step)
        psi = decoder.basis(feats)[:, :r]
        loss = (psi - target).square().sum() / denom
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


class CoefficientTargets(NamedTuple):
    """Frames expressed in a fixed basis ``G = Q R`` (reduced QR).

    Attributes
    ----------
    r_factor : Tensor, shape (K, K)
        Upper-triangular ``R``.
    targets : Tensor, shape (N, T, K, C)
        ``Q^T x`` per frame and channel.
    residual : Tensor, shape (N,)
        ``||x - Q Q^T x||^2`` per run (summed over frames, points, channels).
    n_points : int
        ``P``, to express losses per point.
    """

    r_factor: Tensor
    targets: Tensor
    residual: Tensor
    n_points: int


def coefficient_targets(values: Tensor, prepared: Tensor) -> CoefficientTargets:
    """Project frames onto a fixed basis, e.g. a separable decoder's basis at the points.

    Parameters
    ----------
    values : Tensor, shape (N, T, P, C)
        Frames in normalized units.
    prepared : Tensor, shape (P, K)
        The basis at the frames' points (full column rank), e.g.
        ``model.decoder.basis_points(points)``.

    Returns
    -------
    CoefficientTargets
        Computed in float64, returned in the dtype of ``values``.

    Examples
    --------
    >>> import torch
    >>> ct = coefficient_targets(torch.ones(2, 3, 5, 1), torch.ones(5, 1))
    >>> ct.targets.shape, float(ct.residual.abs().max()) < 1e-12
    (torch.Size([2, 3, 1, 1]), True)
    """
    _check_values(values)
    if prepared.dim() != 2 or prepared.shape[0] != values.shape[2]:
        raise ShapeError(
            f"prepared must have shape (P={values.shape[2]}, K), got {tuple(prepared.shape)}"
        )
    if prepared.shape[1] > prepared.shape[0]:
        raise ShapeError(
            f"prepared has more basis functions (K={prepared.shape[1]}) than points "
            f"(P={prepared.shape[0]}): the coefficients are not determined"
        )
    q, r = torch.linalg.qr(prepared.double())
    x = values.double()
    z = torch.einsum("pk,ntpc->ntkc", q, x)
    residual = x.square().sum((1, 2, 3)) - z.square().sum((1, 2, 3))
    dtype = values.dtype
    return CoefficientTargets(r.to(dtype), z.to(dtype), residual.to(dtype), prepared.shape[0])


def coefficient_loss(
    model: LDNetModel, params: Tensor, r_factor: Tensor, targets: Tensor, n_points: int
) -> Tensor:
    """Field MSE of ``model`` in the fixed basis, minus the basis' truncation residual.

    ``sum ||R c(s_t) - Q^T x_t||^2 / (B * T * P * C)`` where ``c(s_t)`` are the
    coefficients the model's decoder gives its latent trajectory: decoding the
    trajectory with ``R`` as the basis (``decode_basis``) yields ``R c`` directly.

    Parameters
    ----------
    model : LDNetModel
        With a separable decoder.
    params : Tensor, shape (B, d_u)
    r_factor : Tensor, shape (K, K)
    targets : Tensor, shape (B, T, K, C)
    n_points : int
        ``P`` of the projected frames.

    Returns
    -------
    Tensor, 0-d
    """
    dec = _separable(model)
    k = dec.n_basis + 1
    ok = (
        r_factor.shape == (k, k)
        and targets.dim() == 4
        and targets.shape[2:] == (k, dec.n_channels)
        and params.dim() == 2
        and params.shape[0] == targets.shape[0]
    )
    if not ok:
        raise ShapeError(
            f"coefficient_loss needs params (B, d_u), r_factor (K, K) and targets (B, T, K, C) "
            f"with K = n_basis + 1 = {k} and C = {dec.n_channels}; got params "
            f"{tuple(params.shape)}, r_factor {tuple(r_factor.shape)}, targets "
            f"{tuple(targets.shape)}"
        )
    pred = dec.decode_basis(model.rollout(params, targets.shape[1]), r_factor)
    b, t, _, c = targets.shape
    return (pred - targets).square().sum() / (b * t * n_points * c)


def train_coefficients(
    model: LDNetModel, params: Tensor, targets: CoefficientTargets, config: TrainConfig
) -> list[float]:
    """Train the latent dynamics and coefficient network against fixed-basis targets.

    Adam on :func:`coefficient_loss` over batches of whole runs, with the learning
    rate schedule, batch size, gradient clipping, weight decay and seed of
    ``config``; the basis network gets no gradient.  In place.

    Parameters
    ----------
    model : LDNetModel
        With a separable decoder.
    params : Tensor, shape (N, d_u)
        Normalized parameters of the runs.
    targets : CoefficientTargets
        From :func:`coefficient_targets` of the same runs.
    config : TrainConfig
        ``epochs``, ``batch_size``, ``lr``, ``lr_schedule``, ``weight_decay``,
        ``grad_clip`` and ``seed`` are used.

    Returns
    -------
    list of float
        Mean training loss per epoch (field MSE minus the truncation residual).
    """
    _separable(model)
    n = targets.targets.shape[0]
    if params.dim() != 2 or params.shape[0] != n:
        raise ShapeError(f"params must have shape (N={n}, d_u), got {tuple(params.shape)}")
    like = model.dt0
    params = params.to(like)
    r_factor = targets.r_factor.to(like)
    z = targets.targets.to(like)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    gen = torch.Generator().manual_seed(config.seed)
    losses = []
    model.train()
    for epoch in range(config.epochs):
        for group in optimizer.param_groups:
            group["lr"] = scheduled_lr(config, epoch)
        total = 0.0
        for idx in torch.randperm(n, generator=gen).split(config.batch_size):
            idx = idx.to(like.device)
            loss = coefficient_loss(model, params[idx], r_factor, z[idx], targets.n_points)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    return losses
