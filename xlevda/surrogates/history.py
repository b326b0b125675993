"""Records of training runs, saved with the trained models.

:class:`TrainingHistory` is set by :func:`~xlevda.surrogates.training.train` on an
:class:`~xlevda.surrogates.ldnet.LDNetModel`, :class:`EncoderHistory` by
:func:`~xlevda.surrogates.encoder_training.fit_encoder` on an
:class:`~xlevda.surrogates.encoder.ObservationEncoder`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EncoderHistory", "TrainingHistory"]


@dataclass
class TrainingHistory:
    """Per-epoch record of a training run.

    Attributes
    ----------
    epoch : list of int
        Epoch indices (from 0).
    train_loss : list of float
        Mean training MSE over the epoch's batches (normalized units).
    val_loss : list of float
        Validation MSE after the epoch (empty without a validation source).
    val_rel_rmse : list of float
        Validation ``||pred - true|| / ||true||`` over all frames, points and
        channels (empty without a validation source).
    lr : list of float
        Learning rate of the epoch.
    wall_time : list of float
        Seconds since the start of training at the end of the epoch.
    best_epoch : int or None
        Epoch of the restored weights (lowest validation loss, or training loss
        without validation); ``None`` if no epoch finished with a finite loss.
    best_loss : float or None
        Loss of the restored weights.
    stop_reason : str
        ``"completed"``, ``"early stopping ..."``, ``"callback"`` or ``"diverged ..."``.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_rel_rmse: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    wall_time: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    best_loss: float | None = None
    stop_reason: str = "completed"

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through :meth:`from_dict`).

        Examples
        --------
        >>> TrainingHistory(epoch=[0], train_loss=[1.0]).to_dict()["train_loss"]
        [1.0]
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingHistory:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


@dataclass
class EncoderHistory:
    """Per-epoch record of encoder training (losses in standardized output units).

    Attributes
    ----------
    train_loss, val_loss : list of float
        Mean squared error per epoch on the (noisy) training and validation inputs.
    best_epoch : int or None
        Epoch of the restored weights (lowest validation loss).
    seconds : float
        Wall time of training.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)
