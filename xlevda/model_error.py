"""The model-error term of LEVDA's output fields: its option and its pooled estimate.

Numpy only.  Each window's analysis measures the error its spread leaves out
(:func:`xlevda.core.levda.observed_excess`); :func:`model_error_std` turns those levels
into a standard deviation per output time and variable, pooled over the windows that
agree.  The draws themselves are added when the fields are decoded
(:func:`xlevda.decode.decode_block`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlevda.cycle import Cycle
from xlevda.errors import ConfigError

__all__ = ["OUTLIER_Z", "ModelErrorTerm", "model_error_std", "pooled_variance", "window_variance"]

OUTLIER_Z = 5.0
"""Standard errors by which a window's level must exceed the pool to keep its own.

The Gaussian standard error ignores that the values of one time share the ensemble's
error, so it is too small: on the tsunami demo, windows that agree stood up to 3.3 of
them from the pool, a window whose members sat in different minima 118-131."""


@dataclass(frozen=True)
class ModelErrorTerm:
    """An additive model-error term in LEVDA's output fields, estimated from the data.

    The paper's ensemble-only analysis, ``LEVDA(model_error=ModelErrorTerm())``; the
    default :class:`~xlevda.field_analysis.FieldAnalysis` analyses the residuals instead.

    The analysis members are states of the surrogate, so their spread represents the
    uncertainty of its latent state and parameters given the observations, not the
    surrogate's own error, which can dominate the error of the fields.  With this
    option, per variable, the error of the analysis that its spread leaves out is
    estimated from the observations (:func:`xlevda.core.levda.observed_excess`: the
    level at the latent step times of ``(y - ybar)^2 + spread^2 - sigma_obs^2``, then
    pooled and clipped at 0) and added to each member's decoded field at every output
    time as independent ``N(0, v)`` draws per point, output time and member (white in
    space and time: only the variance is estimated).  The draws depend on the case's
    seed (``seed`` + case index), the variable, the index of the output time and the
    member, not on the chunking.  Latent states, parameters and the cycling are
    unchanged; ``<variable>_model_error_std`` in the output holds the standard
    deviations (also without this option, as a diagnostic, pooled).  A variable never
    observed gets no term.

    Attributes
    ----------
    pooled : bool
        Pool the estimate over the windows (default) or estimate it per window
        (``False``; a window without observations of a variable keeps the last
        estimate).  Where the model error is small against the observation error,
        one window's estimate is a small difference of large, noisy terms (with
        ``n`` values of error ``sigma`` its standard error is about ``sigma^2 sqrt(2 /
        n)``); pooling divides that by the square root of the number of windows.
        The windows' levels are averaged with their counts as weights; a window whose
        level exceeds the pool by more than five standard errors (those of Gaussian
        residuals of variance ``sigma^2`` plus the pool), e.g. one where members sit
        in different minima, keeps its own and is left out of the pool.

    Examples
    --------
    >>> from xlevda.methods import LEVDA
    >>> LEVDA(model_error=ModelErrorTerm()).model_error  # the default is FieldAnalysis()
    ModelErrorTerm(pooled=True)
    """

    pooled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.pooled, bool):
            raise ConfigError(f"ModelErrorTerm.pooled={self.pooled!r}: expected a bool")


def pooled_variance(
    excess: np.ndarray, count: np.ndarray, noise: np.ndarray, leverage: np.ndarray
) -> np.ndarray:
    """Model-error variance (W, C) pooled over the windows that agree.

    Per channel: the windows' levels averaged with weights their counts, over the
    windows whose own level does not exceed that average by more than
    :data:`OUTLIER_Z` standard errors (found by iterating: leaving such a window out
    lowers the average).  A window's standard error is the one its level would have
    if every term were a Gaussian residual of variance ``sigma^2 + Q``:
    ``sqrt(2 leverage) (sigma^2 + max(Q, 0))``, ``Q`` the pool, so it does not depend on
    the window's own scatter (which is correlated with its level).  Outlying windows
    (e.g. one whose members sit in different minima) keep their own level; the
    others and windows without observations get the pool.
    """
    seen = (count > 0) & np.isfinite(excess)
    value = np.where(seen, excess, 0.0)
    keep = seen.copy()
    while True:
        n = (count * keep).sum(0)
        pool = np.where(n > 0, (value * count * keep).sum(0) / np.maximum(n, 1), np.nan)
        se = np.sqrt(2 * np.nan_to_num(leverage)) * (
            np.nan_to_num(noise) + np.maximum(np.nan_to_num(pool), 0.0)
        )
        outlier = seen & (value - pool > OUTLIER_Z * se)
        if np.array_equal(keep, seen & ~outlier):
            return np.where(outlier, value, pool)
        keep = seen & ~outlier


def window_variance(cycle: Cycle, pooled: bool = True) -> np.ndarray | None:
    """Model-error variance (W, C) of each window, normalized, clipped at 0.

    Pooled (:func:`pooled_variance`), or per window (``pooled=False``), where a window
    without observations of a channel keeps the last estimate; 0 before any and for a
    channel never observed.  ``None`` for a cycle without the estimates (methods other
    than LEVDA).
    """
    excess, count = cycle.excess, cycle.excess_count
    if excess is None or count is None:
        return None
    if pooled:
        assert cycle.excess_noise is not None and cycle.excess_leverage is not None
        var = pooled_variance(excess, count, cycle.excess_noise, cycle.excess_leverage)
    else:
        var = excess.copy()
        for w in range(1, len(var)):
            var[w] = np.where(np.isnan(var[w]), var[w - 1], var[w])
    return np.clip(np.nan_to_num(var, nan=0.0), 0.0, None)


def model_error_std(cycle: Cycle, which: np.ndarray, model_error: object) -> np.ndarray | None:
    """Standard deviation (T, C) of the model-error term at each output time, normalized.

    :func:`window_variance`, pooled unless ``model_error`` is
    ``ModelErrorTerm(pooled=False)`` (so also without the option, for the diagnostic),
    at the window supplying each output time (``which``).
    """
    pooled = not (isinstance(model_error, ModelErrorTerm) and not model_error.pooled)
    var = window_variance(cycle, pooled)
    return None if var is None else np.sqrt(var)[which]
