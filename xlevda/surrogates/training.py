"""Training LDNet surrogates on frames of simulated runs (paper eq. 15).

Torch only.  Data reach :func:`train` through the
:class:`~xlevda.surrogates.frames.FrameSource` protocol (defined, with
:class:`~xlevda.surrogates.frames.FrameBatch` and the in-memory
:class:`~xlevda.surrogates.frames.TensorFrameSource`, in :mod:`xlevda.surrogates.frames`).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor
from tqdm.auto import tqdm

from xlevda.errors import ShapeError, VariableError
from xlevda.surrogates.config import TrainConfig
from xlevda.surrogates.frames import FrameBatch, FrameSource
from xlevda.surrogates.history import TrainingHistory
from xlevda.surrogates.initial_state import fitted_prediction, trajectory_loss
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import present, square_error

__all__ = [
    "Evaluation",
    "evaluate",
    "scheduled_lr",
    "train",
]


class Evaluation(NamedTuple):
    """Errors of a model on a source, in normalized units.

    Attributes
    ----------
    mse : float
        Mean squared error over runs, frames, points and channels.
    rel_rmse : float
        ``||pred - true|| / ||true||`` over the same.
    """

    mse: float
    rel_rmse: float


def scheduled_lr(config: TrainConfig, epoch: int) -> float:
    """Learning rate of ``epoch`` (from 0) under ``config.lr_schedule``.

    Examples
    --------
    >>> cfg = TrainConfig(lr=1.0, lr_schedule="step", lr_decay_every=2, lr_decay_factor=0.5)
    >>> [scheduled_lr(cfg, e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    if config.lr_schedule == "step":
        return config.lr * config.lr_decay_factor ** (epoch // config.lr_decay_every)
    if config.lr_schedule == "cosine":
        progress = epoch / max(config.epochs - 1, 1)
        lo = config.lr * config.lr_min_factor
        return lo + 0.5 * (config.lr - lo) * (1.0 + math.cos(math.pi * progress))
    return config.lr


def _check_batch(batch: FrameBatch, model: LDNetModel, where: str, missing: bool) -> None:
    params, points, values = batch.params, batch.points, batch.values
    n_coords, n_channels = model.schema.n_coords, model.schema.n_channels
    ok = (
        params.dim() == 2
        and params.shape[1] == model.param_dim
        and points.dim() in (2, 3)
        and points.shape[-1] == n_coords
        and values.dim() == 4
        and values.shape[0] == params.shape[0]
        and values.shape[2] == points.shape[-2]
        and values.shape[3] == n_channels
        and (points.dim() == 2 or points.shape[0] == values.shape[1])
        and values.shape[0] > 0
    )
    if not ok:
        raise ShapeError(
            f"{where} batch has params {tuple(params.shape)}, points {tuple(points.shape)}, "
            f"values {tuple(values.shape)}; the model needs params (B, {model.param_dim}), "
            f"points (T, P, {n_coords}) or (P, {n_coords}), values (B, T, P, {n_channels})"
        )
    finite = torch.isfinite(values) | (torch.isnan(values) if missing else False)
    if not (finite.all() and torch.isfinite(params).all()):
        raise VariableError(
            f"{where} batch holds "
            + ("infinite" if missing else "NaN or infinite")
            + " parameters or targets"
        )


def _to_model(batch: FrameBatch, like: Tensor) -> FrameBatch:
    runs = None if batch.runs is None else batch.runs.to(device=like.device)
    moved = (x.to(device=like.device, dtype=like.dtype) for x in batch[:3])
    return FrameBatch(*moved, runs)


def _missing(source: FrameSource) -> bool:
    """Whether ``source`` serves NaN for missing values (its ``missing`` attribute)."""
    return bool(getattr(source, "missing", False))


def _check_source(source: FrameSource, name: str) -> None:
    if source.n_runs < 1 or source.n_frames < 1:
        raise ShapeError(
            f"{name} source is empty: n_runs={source.n_runs}, n_frames={source.n_frames}"
        )


def evaluate(
    model: LDNetModel,
    source: FrameSource,
    *,
    batch_size: int = 8,
    points_per_frame: int | None = None,
    seed: int = 0,
) -> Evaluation:
    """MSE and relative RMSE of ``model`` on every run of ``source`` (no gradients).

    Parameters
    ----------
    model : LDNetModel
    source : FrameSource
    batch_size : int
        Runs per forward pass.
    points_per_frame : int or None
        ``None`` for every point, else a random subset per frame drawn with ``seed``.
    seed : int
        Seed of that subset (the same seed gives the same subset).

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.frames import TensorFrameSource
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(3)
    >>> src = TensorFrameSource(torch.zeros(2, 1), torch.zeros(4, 1), torch.ones(2, 3, 4, 1))
    >>> evaluate(LDNetModel(LDNetConfig(decoder=MLPDecoderConfig()), schema), src).rel_rmse > 0
    True
    """
    _check_source(source, "evaluation")
    like = model.dt0
    gen = torch.Generator().manual_seed(seed)
    sse = sst = count = 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in source.batches(batch_size, points_per_frame, gen, False):
            _check_batch(batch, model, "evaluation", _missing(source))
            batch = _to_model(batch, like)
            pred = fitted_prediction(model, batch.params, batch.points, batch.values)
            err, values = square_error(pred, batch.values)
            sse += float(err.sum())
            sst += float(values.square().sum())
            count += int(present(batch.values).sum())
    model.train(was_training)
    rel = math.sqrt(sse / sst) if sst > 0 else math.inf
    return Evaluation(mse=sse / max(count, 1), rel_rmse=rel)


def train(
    model: LDNetModel,
    train_source: FrameSource,
    val_source: FrameSource | None = None,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    callback: Callable[[int, TrainingHistory], bool | None] | None = None,
) -> TrainingHistory:
    """Fit ``model`` by Adam on the MSE of decoded trajectories (paper eq. 15).

    Each step rolls out whole trajectories of a batch of runs from ``s_{-1} = 0``
    (from their learned initial states with ``LearnedInitialState``; validation
    runs then start from states fitted to their first frame) and decodes them at
    the batch's points; the loss is the mean squared error over runs, frames,
    points and channels (eq. 15 up to the constant factor ``T * C``).
    After every epoch the model is evaluated on ``val_source``; the weights with
    the lowest validation loss (training loss without validation)
    are restored at the end and ``model.history`` is set.

    Parameters
    ----------
    model : LDNetModel
        Trained in place, on its own device and dtype.
    train_source : FrameSource
        Training runs.
    val_source : FrameSource, optional
        Validation runs, evaluated on every point (or ``config.val_points_per_frame``).
    config : TrainConfig, optional
        Defaults to ``model.config.train``.
    progress : bool
        Show a progress bar (epoch, train loss, validation relative RMSE, lr).
    callback : callable, optional
        ``callback(epoch, history)`` after every epoch; returning ``True`` stops.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    ShapeError
        A source is empty, or its batches do not match the model's parameter,
        coordinate or channel counts.
    VariableError
        A batch holds NaN or infinite targets or parameters.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.frames import TensorFrameSource
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(3)
    >>> src = TensorFrameSource(torch.rand(4, 1), torch.rand(8, 1), torch.rand(4, 3, 8, 1))
    >>> hist = train(LDNetModel(LDNetConfig(decoder=MLPDecoderConfig()), schema), src, src,
    ...              TrainConfig(epochs=2, points_per_frame=4), progress=False)
    >>> len(hist.train_loss)
    2
    """
    config = model.config.train if config is None else config
    _check_source(train_source, "training")
    if val_source is not None:
        _check_source(val_source, "validation")
    optimizer = _optimizer(model, config)
    gen = torch.Generator().manual_seed(config.seed)
    history = TrainingHistory()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_loss = math.inf
    stale = 0
    start = time.perf_counter()
    bar = tqdm(total=config.epochs, desc="LDNet", unit="epoch", disable=not progress)
    try:
        for epoch in range(config.epochs):
            lr = scheduled_lr(config, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_factor"]
            train_loss = _train_epoch(model, train_source, optimizer, config, gen)
            if train_loss is None:
                history.stop_reason = f"diverged: non-finite training loss in epoch {epoch}"
                warnings.warn(
                    f"LDNet training {history.stop_reason}; restoring the best weights "
                    "(lower TrainConfig.lr or set grad_clip)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                break
            monitor = _record_epoch(model, val_source, config, history, epoch, train_loss, lr)
            history.wall_time.append(time.perf_counter() - start)
            if monitor < best_loss:
                best_loss = monitor
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                history.best_epoch = epoch
                history.best_loss = monitor
                stale = 0
            else:
                stale += 1
            bar.set_postfix(_postfix(history, val_source is not None, lr), refresh=False)
            bar.update(1)
            if callback is not None and callback(epoch, history):
                history.stop_reason = "callback"
                break
            if config.patience is not None and stale >= config.patience:
                history.stop_reason = f"early stopping: no lower loss for {config.patience} epochs"
                break
    finally:
        bar.close()
    model.load_state_dict(best_state)
    model.history = history
    return history


def _optimizer(model: LDNetModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices; a learned initial-state table has its own
    group (no decay: it has its own penalty; learning rate times ``lr_factor``)."""
    table = getattr(model, "initial_states", None)
    decay = [p for p in model.parameters() if p.dim() >= 2 and p is not table]
    no_decay = [p for p in model.parameters() if p.dim() < 2 and p is not table]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr_factor": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_factor": 1.0},
    ]
    if table is not None:
        init = model.config.initial_state
        groups.append({"params": [table], "weight_decay": 0.0, "lr_factor": init.lr_factor})
    return torch.optim.AdamW(groups, lr=config.lr)


def _train_epoch(
    model: LDNetModel,
    source: FrameSource,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    generator: torch.Generator,
) -> float | None:
    """One pass of optimizer steps over ``source``: the mean loss per run, or ``None``
    at the first non-finite loss (the step is then not taken)."""
    like = model.dt0
    model.train()
    total = 0.0
    n_runs = 0
    for batch in source.batches(config.batch_size, config.points_per_frame, generator, True):
        _check_batch(batch, model, "training", _missing(source))
        params, points, values, runs = _to_model(batch, like)
        loss = trajectory_loss(model, params, points, values, runs)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        total += loss_value * values.shape[0]
        n_runs += values.shape[0]
    if n_runs == 0:
        raise ShapeError("the training source yielded no batches")
    return total / n_runs


def _record_epoch(
    model: LDNetModel,
    val_source: FrameSource | None,
    config: TrainConfig,
    history: TrainingHistory,
    epoch: int,
    train_loss: float,
    lr: float,
) -> float:
    """Append the epoch's losses (validating on ``val_source``) to ``history``; the loss
    that selects the weights (validation, else training)."""
    history.epoch.append(epoch)
    history.train_loss.append(train_loss)
    history.lr.append(lr)
    if val_source is None:
        return train_loss
    val = evaluate(
        model,
        val_source,
        batch_size=config.batch_size,
        points_per_frame=config.val_points_per_frame,
        seed=config.seed + 1,
    )
    history.val_loss.append(val.mse)
    history.val_rel_rmse.append(val.rel_rmse)
    return val.mse


def _postfix(history: TrainingHistory, validated: bool, lr: float) -> dict[str, str]:
    """Progress-bar fields of the last epoch."""
    postfix = {"train": f"{history.train_loss[-1]:.3e}"}
    if validated:
        postfix["val_rel"] = f"{history.val_rel_rmse[-1]:.3f}"
    postfix["lr"] = f"{lr:.1e}"
    return postfix
