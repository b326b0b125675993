"""Checks of an analysis that warn: where it leaves what the surrogate has learned.

Three checks, each a :class:`UserWarning` per :func:`xlevda.assimilate` call and a
record in the output:

- parameters estimated outside the surrogate's training range
  (``schema.param_range``), per analysis (window) and member:
  :func:`params_outside`, the output's ``window_<param>_outside_training_range``;
- target times past the trained horizon (the last training frame):
  :func:`horizon_attrs`, the output's attributes ``surrogate_trained_horizon`` and
  ``n_target_times_past_horizon``;
- analyses whose observation misfit is not below their background's nor within three
  standard deviations of the observations' noise level (the median over members of the method's
  ``misfit_pair`` diagnostics, per window): :func:`misfit_not_reduced`, the
  output's ``window_misfit_not_reduced``.

A full-state model (a simulator, :class:`~xlevda.surrogates.protocol.FullStateModel`,
with any method) has no training range or horizon: only the misfit check applies
to it (:func:`is_learned`).  Numpy only.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xlevda._convert import frame_times
from xlevda.cycle import Cycle
from xlevda.errors import CoordinateError
from xlevda.methods.base import Method
from xlevda.surrogates.protocol import FullStateModel, Surrogate
from xlevda.surrogates.schema import SurrogateSchema

__all__ = [
    "CycleChecks",
    "check_cycle",
    "horizon_attrs",
    "is_learned",
    "misfit_not_reduced",
    "params_outside",
    "warn_cycles",
]

_RANGE_TOLERANCE = 1e-9  # of the range's width: round-off at its ends is not "outside"


@dataclass(frozen=True)
class CycleChecks:
    """The checks of one case's :class:`~xlevda.cycle.Cycle`.

    Attributes
    ----------
    param_outside : ndarray of bool, shape (W, K, P), optional
        Whether each parameter of each member's analysis in each window lies outside
        the training range; ``None`` for a full-state model.
    misfit_not_reduced : ndarray of bool, shape (W,), optional
        Whether each window's analysis misfit is not below its background's;
        ``None`` for methods without a ``misfit_pair``.
    replaced : ndarray of int, shape (W,), optional
        Per window, the members the method replaced because their state was not finite
        (its ``replaced`` diagnostic, per member or counted); ``None`` for methods
        without one.
    members : int
        Ensemble size.
    """

    param_outside: np.ndarray | None
    misfit_not_reduced: np.ndarray | None
    replaced: np.ndarray | None = None
    members: int = 0


def params_outside(z: np.ndarray, schema: SurrogateSchema) -> np.ndarray:
    """Whether the parameters of states ``z`` (..., d_s + P) lie outside the training range.

    ``z`` holds normalized parameters last, as the analyses do.  Values within
    ``1e-9`` of the range's width of its ends count as inside (round-off).

    Examples
    --------
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> s = SurrogateSchema.minimal(n_frames=3)  # one parameter, range [-1, 1]
    >>> params_outside(np.array([[0.0, 0.5], [0.0, -1.0], [0.0, 1.2]]), s)[:, 0].tolist()
    [False, False, True]
    """
    n_params = len(schema.params)
    u = schema.param_norm.denormalize(z[..., z.shape[-1] - n_params :])
    lo, hi = np.asarray(schema.param_range, float).reshape(n_params, 2).T
    tol = _RANGE_TOLERANCE * (hi - lo)
    return (u < lo - tol) | (u > hi + tol)


def misfit_not_reduced(
    analysis: np.ndarray, background: np.ndarray, noise_level: np.ndarray
) -> np.ndarray:
    """Per window: the analysis fits the observations no better than its background.

    A window is flagged when the median over members of ``analysis`` is not below
    that of ``background`` and above ``noise_level`` (the value of a fit to the
    observations' errors): an analysis that fits the data to their noise is not
    flagged, so uninformative observations (huge errors) raise no alarm.

    Parameters
    ----------
    analysis, background : ndarray, shape (W, K) or (W,)
        Misfits per window (and member).
    noise_level : ndarray, shape (W,)

    Returns
    -------
    ndarray of bool, shape (W,)
        Windows where either median is NaN (nothing observed) are not flagged.

    Examples
    --------
    >>> analysis = np.array([[1.0, 3.0], [5.0, 5.0], [0.2, 0.3]])
    >>> background = np.array([[4.0, 2.0], [5.0, 1.0], [0.1, 0.1]])
    >>> misfit_not_reduced(analysis, background, np.ones(3))
    array([False,  True, False])
    """
    a = analysis.reshape(len(analysis), -1).astype(float)
    b = background.reshape(len(background), -1).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        med_a, med_b = np.nanmedian(a, axis=1), np.nanmedian(b, axis=1)
    return ~np.isnan(med_b) & (med_a >= med_b) & (med_a > noise_level)


def is_learned(model: Surrogate, method: Method) -> bool:
    """Whether ``model`` is a learned surrogate (with a training range and horizon).

    Not a full-state model (a simulator), nor used by a full-state method.
    """
    return not method.full_state and not isinstance(model, FullStateModel)


def check_cycle(cycle: Cycle, model: Surrogate, method: Method) -> CycleChecks:
    """The checks of one case's cycle (no warning: :func:`warn_cycles` warns)."""
    outside = None
    if is_learned(model, method) and model.schema.params:
        outside = params_outside(cycle.z_analysis, model.schema)
    not_reduced = None
    pair = method.misfit_pair
    if pair is not None:
        # the misfit of the observations' noise alone, plus three of its standard deviations
        # (1/2 chi^2 with n values: mean n / 2, sd sqrt(n / 2); per value: 1 and sqrt(2 / n))
        n = np.maximum(np.asarray(cycle.n_obs, float), 1.0)
        level = n / 2 + 3 * np.sqrt(n / 2) if pair.half_sum else 1 + 3 * np.sqrt(2 / n)
        diag = cycle.diagnostics
        not_reduced = misfit_not_reduced(diag[pair.analysis], diag[pair.background], level)
    replaced = cycle.diagnostics.get("replaced")
    if replaced is not None:
        replaced = np.asarray(replaced)
        replaced = replaced.sum(1) if replaced.ndim == 2 else replaced.astype(int)
    return CycleChecks(outside, not_reduced, replaced, cycle.z_analysis.shape[1])


def _warn(message: str) -> None:
    """A :class:`UserWarning` attributed to the first caller outside xlevda."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("xlevda"):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level + 1)


def _where(cases: Sequence[np.ndarray]) -> str:
    """``"windows 0, 3"`` or, for several cases, ``"case 1 window 2, ..."`` (at most 5)."""
    if len(cases) == 1:
        places = [f"{w}" for w in np.flatnonzero(cases[0])]
        label = "window" if len(places) == 1 else "windows"
    else:
        places = [f"case {c} window {w}" for c, f in enumerate(cases) for w in np.flatnonzero(f)]
        label = ""
    shown = ", ".join(places[:5]) + (", ..." if len(places) > 5 else "")
    return f"{label} {shown}".strip()


def warn_cycles(checks: Sequence[CycleChecks], schema: SurrogateSchema, method: Method) -> None:
    """One :class:`UserWarning` per check that fails in any case."""
    outside = [c.param_outside for c in checks if c.param_outside is not None]
    if outside and any(o.any() for o in outside):
        counts = np.sum([o.sum(axis=(0, 1)) for o in outside], axis=0)
        total = sum(o.shape[0] * o.shape[1] for o in outside)
        named = "; ".join(
            f"{p}: {n} of {total} (range [{lo:.6g}, {hi:.6g}])"
            for p, n, (lo, hi) in zip(schema.params, counts, schema.param_range, strict=True)
            if n
        )
        _warn(
            f"{method.name}: parameters estimated outside the surrogate's training range, "
            f"counted over windows x members: {named}. The surrogate extrapolates there; see "
            "the output's window_<parameter>_outside_training_range",
        )
    flags = [c.misfit_not_reduced for c in checks if c.misfit_not_reduced is not None]
    if flags and any(f.any() for f in flags):
        n, total = sum(int(f.sum()) for f in flags), sum(len(f) for f in flags)
        pair = method.misfit_pair
        _warn(
            f"{method.name}: in {n} of {total} windows ({_where(flags)}) the analysis does not "
            f"fit the observations better than its background (median over members of "
            f"{pair.analysis} >= of {pair.background}, and above the observations' noise "
            "level); the model may not represent the observed state. See the output's "
            "window_misfit_not_reduced",
        )
    replaced = [c.replaced for c in checks if c.replaced is not None]
    if replaced and any(r.any() for r in replaced):
        n = sum(int(c.replaced.sum()) for c in checks if c.replaced is not None)
        total = sum(c.replaced.size * c.members for c in checks if c.replaced is not None)
        _warn(
            f"{method.name}: {n} of {total} members x windows were replaced: "
            f"{method.diagnostics['replaced']}. See the output's window_replaced",
        )


def horizon_attrs(
    times: np.ndarray, x: np.ndarray, schema: SurrogateSchema, name: str, allowed: bool = True
) -> dict:
    """Warn if target ``times`` (fractional steps ``x``) pass the trained horizon; the record.

    Where ``allowed`` is false, passing it is a :class:`~xlevda.errors.CoordinateError`
    (``RunOptions(past_horizon="error")``).

    Returns the output attributes ``surrogate_trained_horizon`` (the last training
    frame's time, as text) and ``n_target_times_past_horizon``.

    Examples
    --------
    >>> s = SurrogateSchema.minimal(n_frames=3)
    >>> horizon_attrs(np.array([0.0, 2.0]), np.array([0.0, 2.0]), s, "time")
    {'surrogate_trained_horizon': '2.0', 'n_target_times_past_horizon': 0}
    """
    horizon = frame_times(schema)[-1]
    past = x > schema.n_frames - 1
    if past.any() and not allowed:
        raise CoordinateError(
            f"target time {name!r} runs to {times[-1]}, past the surrogate's trained horizon "
            f"{horizon} (frame {schema.n_frames - 1}, the last training frame): "
            f"{int(past.sum())} of {len(times)} target times; the surrogate would extrapolate "
            "there. Shorten the target, or allow forecasts beyond the training runs with "
            "RunOptions(past_horizon='forecast')"
        )
    if past.any():
        _warn(
            f"target time {name!r} runs to {times[-1]}, past the surrogate's trained horizon "
            f"{horizon} (frame {schema.n_frames - 1}, the last training frame): "
            f"{int(past.sum())} of {len(times)} target times are forecasts beyond the training "
            "runs, where the surrogate extrapolates",
        )
    return {
        "surrogate_trained_horizon": str(horizon),
        "n_target_times_past_horizon": int(past.sum()),
    }
