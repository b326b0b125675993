"""The observations of one assimilation window in a dense, padded layout (torch only)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ObservationError, ShapeError

__all__ = ["ObsWindow"]


def _float_tensor(name: str, value: object, ndim: int, layout: str) -> Tensor:
    if not isinstance(value, Tensor) or not value.is_floating_point() or value.ndim != ndim:
        got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else type(value)
        raise ShapeError(f"ObsWindow.{name} must be a floating tensor {layout}, got {got}")
    return value


@dataclass(frozen=True)
class ObsWindow:
    """Observations of one window, padded to a dense layout (normalized units).

    Time is counted in latent steps from the window's start state (step 0 is the
    background state itself).  Observation time ``i`` lies at
    ``step[i] + frac[i]`` steps (eq. 17).  Each time has ``P`` query points and
    ``C`` channels; ``weight`` is ``1 / sigma^2`` per observed value and 0 where a
    value is missing or padded, so varying counts per time, moving sensors,
    variables observed at different places, duplicated observations and
    per-observation errors all fit.  Padded points must still be valid query
    points (e.g. a copy of a real one): they are decoded, then weighted by 0.

    Attributes
    ----------
    step : Tensor, shape (T_o,), int64
        Latent step of each observation time, ``>= 0``.
    frac : Tensor, shape (T_o,)
        Fraction of a step past ``step``, in ``[0, 1)``.
    points : Tensor, shape (T_o, P, n_c)
        Query points per observation time (finite).
    values : Tensor, shape (T_o, P, C)
        Observed values; ignored (any value, NaN included) where ``weight == 0``.
    weight : Tensor, shape (T_o, P, C)
        Inverse error variances, finite and ``>= 0``.
    n_steps : int, optional
        Steps the window spans (the next window starts at state ``n_steps``);
        default ``max(step) + 1`` (0 without observations).

    Raises
    ------
    ShapeError
        Tensors of the wrong kind or of inconsistent shapes.
    ObservationError
        Negative steps, fractions outside ``[0, 1)``, non-finite points, negative
        or non-finite weights, non-finite values where ``weight > 0``.
    ConfigError
        ``n_steps`` smaller than ``max(step) + 1``.

    Examples
    --------
    >>> import torch
    >>> w = ObsWindow(step=torch.tensor([0, 2]), frac=torch.tensor([0.0, 0.5]),
    ...               points=torch.zeros(2, 3, 1), values=torch.ones(2, 3, 1),
    ...               weight=torch.ones(2, 3, 1))
    >>> w.length, w.n_obs
    (3, 6)
    """

    step: Tensor
    frac: Tensor
    points: Tensor
    values: Tensor
    weight: Tensor
    n_steps: int | None = None

    def __post_init__(self) -> None:
        step = self.step
        if not isinstance(step, Tensor) or step.dtype != torch.int64 or step.ndim != 1:
            got = f"{tuple(step.shape)} {step.dtype}" if isinstance(step, Tensor) else type(step)
            raise ShapeError(f"ObsWindow.step must be an int64 tensor (T_o,), got {got}")
        t_o = step.shape[0]
        frac = _float_tensor("frac", self.frac, 1, "(T_o,)")
        points = _float_tensor("points", self.points, 3, "(T_o, P, n_c)")
        values = _float_tensor("values", self.values, 3, "(T_o, P, C)")
        weight = _float_tensor("weight", self.weight, 3, "(T_o, P, C)")
        if frac.shape[0] != t_o or points.shape[0] != t_o or values.shape[:2] != points.shape[:2]:
            raise ShapeError(
                f"ObsWindow shapes disagree: step {tuple(step.shape)}, frac {tuple(frac.shape)}, "
                f"points {tuple(points.shape)}, values {tuple(values.shape)}; "
                "expected (T_o,), (T_o,), (T_o, P, n_c), (T_o, P, C)"
            )
        if weight.shape != values.shape:
            raise ShapeError(
                f"ObsWindow.weight has shape {tuple(weight.shape)} but values has "
                f"{tuple(values.shape)}; they must match (T_o, P, C)"
            )
        if (step < 0).any():
            raise ObservationError(f"ObsWindow.step must be >= 0, got {step.min().item()}")
        if not (torch.isfinite(frac) & (frac >= 0) & (frac < 1)).all():
            bad = frac[~(torch.isfinite(frac) & (frac >= 0) & (frac < 1))][0].item()
            raise ObservationError(f"ObsWindow.frac must lie in [0, 1), got {bad}")
        if not torch.isfinite(points).all():
            raise ObservationError(
                "ObsWindow.points must be finite everywhere (pad with a valid point, weight 0)"
            )
        if not (torch.isfinite(weight) & (weight >= 0)).all():
            bad = weight[~(torch.isfinite(weight) & (weight >= 0))][0].item()
            raise ObservationError(
                f"ObsWindow.weight must be finite and >= 0 (1/sigma^2; 0 marks a missing "
                f"value), got {bad}"
            )
        if not torch.isfinite(values[weight > 0]).all():
            where = (~torch.isfinite(values) & (weight > 0)).nonzero()[0].tolist()
            raise ObservationError(
                f"ObsWindow.values is not finite at (time, point, channel) = {tuple(where)} "
                "where weight > 0: give such values weight 0"
            )
        need = int(step.max().item()) + 1 if t_o else 0
        if self.n_steps is not None and (
            isinstance(self.n_steps, bool)
            or not isinstance(self.n_steps, int)
            or self.n_steps < need
        ):
            raise ConfigError(
                f"ObsWindow.n_steps={self.n_steps!r} is out of range: must be an int >= "
                f"max(step) + 1 = {need}"
            )

    @property
    def length(self) -> int:
        """Steps the window spans: ``n_steps`` or ``max(step) + 1``."""
        if self.n_steps is not None:
            return self.n_steps
        return int(self.step.max().item()) + 1 if self.step.numel() else 0

    @property
    def n_obs(self) -> int:
        """Number of observed values (``weight > 0``)."""
        return int((self.weight > 0).sum().item())

    def to(self, dtype: torch.dtype, device: torch.device | str) -> ObsWindow:
        """Copy with floating tensors in ``dtype`` and everything on ``device``."""
        return replace(
            self,
            step=self.step.to(device),
            frac=self.frac.to(device, dtype),
            points=self.points.to(device, dtype),
            values=self.values.to(device, dtype),
            weight=self.weight.to(device, dtype),
        )
