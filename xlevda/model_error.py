"""The model-error term of LEVDA's output fields: its option and its pooled estimate.

Numpy only.  Each window's analysis measures the error its spread leaves out
(:func:`xlevda.core.levda.observed_excess`); :func:`model_error_std` turns those levels
into a standard deviation per output time and variable, pooled over the windows that
agree.  The draws themselves are added when the fields are decoded
(:func:`xlevda.decode.decode_block`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erfcx

from xlevda.cycle import Cycle
from xlevda.errors import ConfigError

__all__ = [
    "LEVELS",
    "OUTLIER_Z",
    "PRIOR_SCALE",
    "ModelErrorTerm",
    "check_level",
    "model_error_std",
    "pooled_level",
    "positive_level",
    "window_variance",
]

Level = Literal["posterior", "clipped"]
LEVELS = ("posterior", "clipped")
"""How a model-error level is made non-negative (:func:`positive_level`)."""

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
    level : {"clipped", "posterior"}
        How the estimated level, an unbiased but noisy difference that can come out
        negative, becomes a variance (:func:`positive_level`): ``"clipped"`` (default, the
        paper's) ``max(0, estimate)``; ``"posterior"`` its mean given the estimate and its
        standard error for a level ``>= 0`` (flat prior), which stays positive where the
        error is below the noise of its estimate (``FieldAnalysis``'s default).
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
    ModelErrorTerm(pooled=True, level='clipped')
    """

    pooled: bool = True
    level: Level = "clipped"

    def __post_init__(self) -> None:
        if not isinstance(self.pooled, bool):
            raise ConfigError(f"ModelErrorTerm.pooled={self.pooled!r}: expected a bool")
        check_level("ModelErrorTerm", self.level)


def check_level(owner: str, value: object) -> None:
    """A :class:`~xlevda.errors.ConfigError` unless ``value`` is one of :data:`LEVELS`."""
    if not isinstance(value, str) or value not in LEVELS:
        raise ConfigError(f"{owner}.level={value!r}: expected 'posterior' or 'clipped'")


PRIOR_SCALE = 1.0
"""Mean of the exponential prior of a model-error level, normalized: the variance of the
variable over the surrogate's training data (``output_norm`` standardizes it)."""


def positive_level(
    estimate: np.ndarray, std_error: np.ndarray, level: Level, prior_scale: float = PRIOR_SCALE
) -> np.ndarray:
    """A variance ``>= 0`` from an unbiased estimate of it and the estimate's standard error.

    ``"clipped"``: ``max(0, estimate)``, the most likely value, which is 0 for every
    estimate below 0, so that an error smaller than the noise of its estimate (about
    half the time then) is taken as none.  ``"posterior"``: the mean of the level ``v``
    given ``estimate ~ N(v, s^2)`` and an exponential prior of mean ``V =
    prior_scale`` (a model error of the order of the variable's own variance at most),
    the mean of a normal truncated at 0, ``m + s phi(m / s) / Phi(m / s)`` with ``m =
    estimate - s^2 / V``: the variance the error has on average given the data, which
    is what an ensemble's spread must match.  It approaches ``estimate`` where that is
    many standard errors above 0 and ``s << V``, and ``V`` where the data say nothing
    (``s >> V``).  NaN stays NaN; a standard error of 0 (or not finite) gives the
    clipped value.

    Examples
    --------
    >>> positive_level(np.array([-1.0, 0.0, 5.0]), np.ones(3), "clipped").tolist()
    [0.0, 0.0, 5.0]
    >>> v = positive_level(np.array([-1.0, 0.0, 5.0]), np.ones(3), "posterior", 1e6)
    >>> [round(x, 6) for x in v.tolist()]  # a flat prior; 5 standard errors up: the estimate
    [0.525135, 0.797884, 5.0]
    >>> positive_level(np.array([0.0]), np.array([1e9]), "posterior", 2.0).round(6).tolist()
    [2.0]
    """
    estimate = np.asarray(estimate, dtype=float)
    clipped = np.maximum(estimate, 0.0)
    s = np.asarray(std_error, dtype=float)
    if level == "clipped":
        return np.where(np.isnan(estimate), np.nan, clipped)
    ok = np.isfinite(s) & (s > 0)
    safe = np.where(ok, s, 1.0)
    z = np.where(ok, estimate / safe - safe / prior_scale, 0.0)  # m / s
    # phi(z) / Phi(z) = sqrt(2 / pi) / erfcx(-z / sqrt(2)) = x + 1/x - 2/x^3 + 10/x^5 - ...
    # for x = -z >> 1: z + phi / Phi by that series there (the sum cancels to 1/x)
    x = np.maximum(-z, 30.0)
    series = 1 / x - 2 / x**3 + 10 / x**5
    direct = z + np.sqrt(2 / np.pi) / erfcx(-np.maximum(z, -30.0) / np.sqrt(2))
    mean = safe * np.where(z < -30.0, series, direct)
    return np.where(ok, np.maximum(mean, 0.0), clipped)


def pooled_level(
    excess: np.ndarray, count: np.ndarray, noise: np.ndarray, leverage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Model-error level (W, C) pooled over the windows that agree, and its standard error.

    Per channel: the windows' levels averaged with weights their counts, over the
    windows whose own level does not exceed that average by more than
    :data:`OUTLIER_Z` standard errors (found by iterating: leaving such a window out
    lowers the average).  A window's standard error is the one its level would have
    if every term were a Gaussian residual of variance ``sigma^2 + Q``:
    ``sqrt(2 leverage) (sigma^2 + max(Q, 0))``, ``Q`` the pool, so it does not depend on
    the window's own scatter (which is correlated with its level).  Outlying windows
    (e.g. one whose members sit in different minima) keep their own level; the
    others and windows without observations get the pool.  The standard error of the
    pool is that of the count-weighted mean of the kept windows' levels, of an outlier
    its own (with its own level in place of ``Q``); NaN where there is no level.  Levels
    are not clipped (:func:`positive_level` does that).
    """
    seen = (count > 0) & np.isfinite(excess)
    value = np.where(seen, excess, 0.0)
    keep = seen.copy()
    while True:
        n = (count * keep).sum(0)
        pool = np.where(n > 0, (value * count * keep).sum(0) / np.maximum(n, 1), np.nan)
        se = _std_error(noise, leverage, np.maximum(np.nan_to_num(pool), 0.0))
        outlier = seen & (value - pool > OUTLIER_Z * se)
        if np.array_equal(keep, seen & ~outlier):
            break
        keep = seen & ~outlier
    share = np.where(keep, count / np.maximum(n, 1), 0.0)
    pool_se = np.sqrt((share**2 * se**2).sum(0))
    own_se = _std_error(noise, leverage, np.maximum(value, 0.0))
    return (
        np.where(outlier, value, pool),
        np.where(outlier, own_se, np.where(n > 0, pool_se, np.nan)),
    )


def _std_error(noise: np.ndarray, leverage: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``sqrt(2 leverage) (sigma^2 + level)``: the standard error of a window's level whose
    terms are Gaussian residuals of variance ``sigma^2 + level`` (0 where unobserved)."""
    return np.sqrt(2 * np.nan_to_num(leverage)) * (np.nan_to_num(noise) + level)


def window_variance(
    cycle: Cycle, pooled: bool = True, level: Level = "clipped"
) -> np.ndarray | None:
    """Model-error variance (W, C) of each window, normalized, ``>= 0``.

    Pooled (:func:`pooled_level`), or per window (``pooled=False``), where a window
    without observations of a channel keeps the last estimate; made non-negative by
    :func:`positive_level` (``level``); 0 before any and for a channel never observed.
    ``None`` for a cycle without the estimates (methods other than LEVDA).
    """
    excess, count = cycle.excess, cycle.excess_count
    if excess is None or count is None:
        return None
    noise, leverage = cycle.excess_noise, cycle.excess_leverage
    if noise is None or leverage is None:  # a cycle recorded before the standard errors
        noise, leverage = np.full_like(excess, np.nan), np.full_like(excess, np.nan)
    if pooled:
        var, se = pooled_level(excess, count, noise, leverage)
    else:
        var = excess.copy()
        se = _std_error(noise, leverage, np.maximum(np.nan_to_num(var), 0.0))
        se = np.where(np.isnan(var), np.nan, se)
        for w in range(1, len(var)):
            filled = np.isnan(var[w])
            var[w], se[w] = np.where(filled, var[w - 1], var[w]), np.where(filled, se[w - 1], se[w])
    return np.nan_to_num(positive_level(var, se, level), nan=0.0)


def model_error_std(cycle: Cycle, which: np.ndarray, model_error: object) -> np.ndarray | None:
    """Standard deviation (T, C) of the model-error term at each output time, normalized.

    :func:`window_variance`, pooled unless ``model_error`` is
    ``ModelErrorTerm(pooled=False)`` (so also without the option, for the diagnostic), made
    non-negative as ``model_error.level`` says (clipped without one), at the window
    supplying each output time (``which``).
    """
    pooled = not (isinstance(model_error, ModelErrorTerm) and not model_error.pooled)
    var = window_variance(cycle, pooled, getattr(model_error, "level", "clipped"))
    return None if var is None else np.sqrt(var)[which]
