"""The field analysis of what the surrogate leaves unexplained: option, residuals, weights.

After a window's analysis, the residuals it leaves at the observations,
``d_k = y + eta_k - H(x_k)`` per member (``eta_k`` perturbations of the observations
centred over the members, so that the mean residual is that of the unperturbed
``y``), are analysed onto the output fields by optimal interpolation with a
model-error covariance ``Q`` (:mod:`xlevda.core.field_analysis`):
``dx_k = Q H^T (H Q H^T + R)^-1 d_k``.  A window's task keeps its
:class:`Residuals` (small: observations x members); once the case's cycle is done,
:func:`case_increments` estimates ``Q`` and solves every window's system
(:func:`~xlevda.core.field_analysis.window_gain`); each decoded block then adds
``Q(output points, observations) W`` (:meth:`FieldIncrements.block`), chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from xlevda.core.field_analysis import (
    DENSE_MAX,
    Gain,
    Metric,
    SparseGain,
    fit_length_scale,
    window_gain,
)
from xlevda.core.rng import generator
from xlevda.core.sparse_oi import pair_count
from xlevda.core.window import ObsWindow
from xlevda.errors import ConfigError
from xlevda.field_increments import FieldIncrements, draw_scale
from xlevda.model_error import Level, check_level
from xlevda.surrogates.schema import SurrogateSchema

__all__ = [
    "FieldAnalysis",
    "Residuals",
    "calibration",
    "case_increments",
    "draw_scale",
    "innovation_variance",
    "metric_of",
    "window_residuals",
]

PERTURBATION_STREAM = 2
"""Stream of the window seed for the field analysis' observation perturbations."""


def _positive(name: str, value, none_ok: bool = True) -> None:
    if value is None and none_ok:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"FieldAnalysis.{name}={value!r}: expected a finite number > 0 or None")


@dataclass(frozen=True)
class FieldAnalysis:
    """Optimal interpolation of the analysis' residuals onto the output fields.

    Replaces :class:`~xlevda.model_error.ModelErrorTerm`'s white draws as
    ``LEVDA(model_error=FieldAnalysis())``; :class:`~xlevda.methods.OI` is the same
    analysis of a constant background.  ``Q`` is, per variable, a variance times a
    Gaspari-Cohn correlation in space; zero between variables.  An output time
    takes the increments of observations near it in time: those of the window that
    supplies it (``window_index``) at the observation time nearest to it, or within
    ``time_scale`` of it, analysed as simultaneous (so that a propagating error is
    not averaged over the window).  Far from those observations the field is the
    surrogate's; as they densify it follows them.  Members take their own
    residuals against centred perturbed observations (randomized maximum
    likelihood's), so the members' mean increment is that of the unperturbed
    observations; the perturbations come from the seed ``(window seed, 2)``.
    The increments leave the model-error variance ``diag(Q - K H Q)``
    (``K = Q H^T (H Q H^T + R)^-1``) unexplained, of which the perturbed
    observations give the members ``diag(K R K^T)``; with ``draws`` the rest,
    ``max(0, f diag(Q - K H Q) - diag(K R K^T))``, is added as independent normal draws
    per point (as :class:`~xlevda.model_error.ModelErrorTerm` adds ``v``, with its keys),
    so that the members' variance is the analysis' error variance: ``v`` far from
    the observations, about the observation error at a densely observed point.  ``f``
    is 1 unless ``cross_validation`` finds the errors at observations left out larger
    (or smaller) than claimed.

    Distances are physical: km on the sphere and for latitude/longitude
    coordinates (regional grids: coordinates with units ``degrees_north`` /
    ``degrees_east`` or named lat/latitude and lon/longitude), otherwise the
    coordinates' own units (the normalized box scaled back).

    Attributes
    ----------
    length_scale : float, optional
        Support radius of the spatial correlation (0 from there on), in those
        units.  ``None``: fitted per variable by maximum likelihood to the mean
        residuals (each window and observation time a group;
        :func:`~xlevda.core.field_analysis.fit_length_scale`); a variable without
        pairs at positive distances gets increments only at its observed points.
        Systems of more than :data:`~xlevda.core.field_analysis.DENSE_MAX`
        observations are solved as sparse matrices: their cost follows the pairs
        of observations closer than the support.
    variance : mapping of str to float, optional
        ``v`` per variable (its units squared).  ``None``: the method's estimate where
        it has one (LEVDA: the pooled ``observed_excess`` level per window, as
        :class:`~xlevda.model_error.ModelErrorTerm`), otherwise the residuals' mean
        square less the observation error variance (:func:`innovation_variance`).
        A variable left out of the mapping gets no increment.
    time_scale : float, optional
        In the surrogate's time units (``schema.time_units``; seconds for datetime
        axes): an output time takes its window's observations within this time of
        it (the nearest observation time if none is).  ``None`` (default): the
        observations of the nearest observation time (ties: the earlier).
    draws : bool
        Add the model-error variance the increments leave (default), or not.
    calibrate : bool
        Analyse the residuals from the calibrated background ``a H(x) + (1 - a) ybar``
        (default; per window and variable, ``a`` in ``[0, 1]`` the least-squares weight
        of the model's values against the observations' mean ``ybar``,
        :func:`calibration`), so that where the surrogate explains the observations no
        better than their mean the analysis is OI's, and where it explains them
        (``a = 1``) nothing changes; ``v`` of a window with ``a < 1`` is then the
        innovation variance of its calibrated residuals.  ``False``: from ``H(x)``.
        Model-free methods (:class:`~xlevda.methods.OI`) ignore it.
    level : {"posterior", "clipped"}
        With ``variance=None``, how the method's estimated level (an unbiased but noisy
        difference, which can come out negative) becomes a variance
        (:func:`~xlevda.model_error.positive_level`): ``"posterior"`` (default) its mean
        given the estimate and its standard error for a level ``>= 0``, so that an error
        below the noise of its estimate keeps a spread (on the tsunami twin the eta
        level was estimated below 0 and clipped, and eta's spread was a quarter of its
        error); ``"clipped"``: ``max(0, estimate)``.
    cross_validation : bool
        Scale the variance the draws complete, ``diag(Q - K H Q)``, per variable by the
        ratio of the errors the analysis makes at observations left out to those it
        claims there (:func:`draw_scale`; default), so that where the covariance's shape
        is wrong between the observations (the increments explain less than ``Q``
        says) the spread still matches the error.  ``False``: unscaled.

    Examples
    --------
    >>> FieldAnalysis(length_scale=300.0).draws
    True
    """

    length_scale: float | None = None
    variance: Mapping[str, float] | None = field(default=None, hash=False)
    time_scale: float | None = None
    draws: bool = True
    calibrate: bool = True
    level: Level = "posterior"
    cross_validation: bool = True

    def __post_init__(self) -> None:
        _positive("length_scale", self.length_scale)
        _positive("time_scale", self.time_scale)
        check_level("FieldAnalysis", self.level)
        for name in ("draws", "calibrate", "cross_validation"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"FieldAnalysis.{name}={getattr(self, name)!r}: expected a bool")
        if self.variance is not None:
            if not isinstance(self.variance, Mapping):
                raise ConfigError(
                    f"FieldAnalysis.variance={self.variance!r}: expected a mapping of variable "
                    "names to variances, or None"
                )
            for k, v in self.variance.items():
                ok = isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                if not isinstance(k, str) or not ok or v < 0:
                    raise ConfigError(
                        f"FieldAnalysis.variance[{k!r}]={v!r}: expected a finite number >= 0"
                    )


@dataclass(frozen=True)
class Residuals:
    """One window's residuals at its observations (normalized units, numpy).

    Attributes
    ----------
    points : ndarray (M, n_coords)
        Normalized positions; ``channel`` (M,) variable index; ``group`` (M,)
        observation time index; ``time`` (M,) latent time (steps from frame 0).
    noise : ndarray (M,)
        Observation error variances.
    member : ndarray (M, K)
        ``y + eta_k - H(x_k)`` (perturbations centred over the members).
    mean : ndarray (M,)
        ``y - mean_k H(x_k)``: the members' mean of ``member``.
    background : ndarray (C,), optional
        A constant per channel added to the model's values weighted by
        ``model_weight`` (OI: the constant background, weight 0), else ``None``.
    model_weight : ndarray (C,), optional
        The weight of the model's values per channel (:func:`calibration`); ``None``: 1.
    """

    points: np.ndarray
    channel: np.ndarray
    group: np.ndarray
    time: np.ndarray
    noise: np.ndarray
    member: np.ndarray
    mean: np.ndarray
    background: np.ndarray | None = None
    model_weight: np.ndarray | None = None


def calibration(observed: Tensor, fit: Tensor, channel: Tensor, n_channels: int):
    """Per channel the weight ``a`` in ``[0, 1]`` and the constant ``(1 - a) ybar`` of the
    background ``ybar + a (H xbar - ybar)`` that best fits the observations.

    ``observed`` (M,) the observations ``y``, ``fit`` (M,) the model's mean ``H xbar`` at
    them, ``channel`` (M,); ``ybar`` is the channel's mean observation.  ``a`` is the
    least-squares coefficient ``sum (y - ybar)(H xbar - ybar) / sum (H xbar - ybar)^2``
    clipped to ``[0, 1]``: 1 for a model that explains the observations, 0 for one that
    explains none of their variation about their mean (the background is then OI's).  An
    estimate within two standard errors of 1 counts as 1 (a model that is right keeps its
    values exactly; its estimate scatters around 1 with the noise).  A channel without
    observations keeps weight 1 and constant 0.

    Examples
    --------
    >>> y = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64)
    >>> a, b = calibration(y, 0.5 * y, torch.tensor([0, 0, 1, 1]), 3)
    >>> a.tolist(), b.tolist()  # a model half the observed variation: no weight beyond 1
    ([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    >>> a, b = calibration(y + 3, -y, torch.tensor([0, 0, 0, 0]), 1)  # anti-correlated
    >>> a.tolist(), b.tolist()
    ([0.0], [3.0])
    """
    weight = torch.ones(n_channels, dtype=torch.float64)
    const = torch.zeros(n_channels, dtype=torch.float64)
    for c in torch.unique(channel).tolist():
        m = channel == c
        ybar = observed[m].mean()
        dy, dh = observed[m] - ybar, fit[m] - ybar
        denom = dh.square().sum()
        a = (dy * dh).sum() / denom if denom > 0 else torch.tensor(0.0, dtype=torch.float64)
        spread = (dy - a * dh).square().sum() / max(int(m.sum()) - 1, 1)
        if denom > 0 and 1 - a <= 2 * (spread / denom).sqrt():
            a = torch.tensor(1.0, dtype=torch.float64)
        weight[c] = a.clamp(0.0, 1.0)
        const[c] = (1 - weight[c]) * ybar
    return weight, const


def window_residuals(
    decoded: Tensor,
    window: ObsWindow,
    anchor: int,
    seed: int,
    background: np.ndarray | None = None,
    calibrate: bool = False,
) -> Residuals:
    """:class:`Residuals` of members ``decoded`` (K, T_o, P, C) at ``window``'s observations.

    ``anchor``: the latent index of the window's step 0.  ``background`` (C,): the
    constant model-free background (OI), the members' ``decoded`` values being it.
    ``calibrate``: the residuals are those of the calibrated background
    ``a H(x_k) + (1 - a) ybar`` (:func:`calibration`, per channel over the window).

    ``seed`` keys the perturbations ``eta_k ~ N(0, R)``, centred over the members and
    scaled by ``sqrt(K / (K - 1))`` (so their covariance stays ``R``).
    """
    t, p, c = (window.weight > 0).nonzero(as_tuple=True)
    k = decoded.shape[0]
    noise = 1 / window.weight[t, p, c].double()
    gen = generator(seed, PERTURBATION_STREAM, device=decoded.device)
    eta = torch.randn(len(t), k, generator=gen, dtype=torch.float64, device=decoded.device)
    eta = (eta - eta.mean(1, keepdim=True)) * (noise[:, None] * k / max(k - 1, 1)).sqrt()
    fit = decoded[:, t, p, c].double().T  # (M, K)
    observed = window.values[t, p, c].double()
    weight = None
    if calibrate:
        weight, const = calibration(observed, fit.mean(1), c, decoded.shape[-1])
        fit = weight[c, None] * fit + const[c, None]
        background = const.numpy()
    mean = observed - fit.mean(1)
    member = mean[:, None] + eta - (fit - fit.mean(1, keepdim=True))

    def np_(x: Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    times = window.step.double() + window.frac.double() + anchor
    return Residuals(
        np_(window.points[t, p].double()),
        np_(c),
        np_(t),
        np_(times[t]),
        np_(noise),
        np_(member),
        np_(mean),
        background,
        None if weight is None else np_(weight),
    )


def metric_of(schema: SurrogateSchema) -> Metric:
    """Physical distances for the surrogate's coordinates (see :class:`FieldAnalysis`).

    Examples
    --------
    >>> metric_of(SurrogateSchema.minimal(3, coords=("x", "y"))).kind
    'plane'
    """
    norm = schema.coord_norm
    if schema.geometry == "sphere":
        return Metric("sphere", norm.offset, norm.scale)
    names = [c.lower() for c in schema.coords]
    units = [str(a.get("units", "")) for a in schema.coord_attrs]

    def find(unit: str, words: tuple[str, ...]) -> int | None:
        hits = [i for i, (n, u) in enumerate(zip(names, units, strict=True)) if u == unit]
        hits = hits or [i for i, n in enumerate(names) if n in words]
        return hits[0] if hits else None

    lat = find("degrees_north", ("lat", "latitude"))
    lon = find("degrees_east", ("lon", "longitude"))
    if len(names) == 2 and lat is not None and lon is not None and lat != lon:
        return Metric("latlon", norm.offset, norm.scale, (lat, lon))
    return Metric("plane", norm.offset, norm.scale)


MAX_SYSTEM_BYTES = 2 << 30
"""Memory the sparse observation system of one set of observations may take."""

PAIR_BYTES = 100
"""Bytes per pair of observations within the support that a sparse system takes: the
pairs (24), the matrix in two formats (24) and its factor's fill (about 4.4 nonzeros
per pair of ``S`` for 6,667 random points with a support of 13 % of the domain, 12 each)."""


def _check_system_size(points: np.ndarray, length: float, metric: Metric, window: int, name):
    """A :class:`~xlevda.errors.ConfigError` before a sparse system too large to solve."""
    if len(points) <= DENSE_MAX:
        return  # dense: at most DENSE_MAX^2 entries
    pairs = pair_count(torch.as_tensor(points), length, metric)
    need = PAIR_BYTES * pairs
    if need > MAX_SYSTEM_BYTES:
        raise ConfigError(
            f"the field analysis of window {window} would solve a system of its {len(points)} "
            f"simultaneous observations of {name!r} with {pairs} pairs within the support "
            f"length {length:.4g} (about {need / 2**30:.1f} GiB; at most "
            f"{MAX_SYSTEM_BYTES // PAIR_BYTES} pairs fit): give a shorter "
            "FieldAnalysis(length_scale=...), use LEVDA(model_error=ModelErrorTerm()) (white "
            "model-error draws, no field analysis) or thin the observations"
        )


def _near(time: np.ndarray, t: float, time_scale: float | None) -> np.ndarray:
    """Rows of observation ``time`` within ``time_scale`` of ``t``, else of the nearest time."""
    if time_scale is not None and (near := np.abs(time - t) <= time_scale).any():
        return near
    times = np.unique(time)
    return time == times[np.argmin(np.abs(times - t))]


def _fitted_lengths(residuals: list[Residuals], variance: np.ndarray, metric: Metric) -> np.ndarray:
    """Per channel the support fitted to the mean residuals of all windows, (C,).

    ``variance`` (C,): the channel's model-error variance (its mean over windows).
    """
    out = np.zeros(len(variance))
    for c in range(len(variance)):
        parts = [(w, r, r.channel == c) for w, r in enumerate(residuals)]
        parts = [(w, r, m) for w, r, m in parts if m.any()]
        if parts:
            out[c] = fit_length_scale(
                torch.as_tensor(np.concatenate([r.points[m] for _, r, m in parts])),
                torch.as_tensor(np.concatenate([r.group[m] + 1_000_000 * w for w, r, m in parts])),
                torch.as_tensor(np.concatenate([r.mean[m] for _, r, m in parts])),
                torch.as_tensor(np.concatenate([r.noise[m] for _, r, m in parts])),
                float(variance[c]),
                metric,
            )
    return out


def innovation_variance(residuals: list[Residuals], n_channels: int) -> np.ndarray:
    """Per channel ``max(0, mean d^2 - mean sigma^2)`` over all windows' mean residuals (C,).

    For residuals from a background whose error has variance ``v`` at the observed
    points, ``E d^2 = v + sigma^2``.

    Examples
    --------
    >>> zero = np.zeros(2, int)
    >>> r = Residuals(np.zeros((2, 1)), zero, zero, zero, np.ones(2), np.zeros((2, 1)),
    ...               np.array([2.0, -2.0]))
    >>> innovation_variance([r], 1).tolist()  # 4 - 1
    [3.0]
    """
    channel = np.concatenate([r.channel for r in residuals])
    sq = np.concatenate([r.mean**2 - r.noise for r in residuals])
    total = np.bincount(channel, sq, n_channels)
    count = np.bincount(channel, minlength=n_channels)
    return np.clip(total / np.maximum(count, 1), 0.0, None)


def _slots(residuals, out_times, which, time_scale) -> tuple[list, np.ndarray]:
    """The distinct (window, rows) sets the output times use, and each time's set."""
    sets: dict[tuple[int, bytes], int] = {}
    chosen, slot = [], np.zeros(len(out_times), dtype=np.int64)
    for i, (t, w) in enumerate(zip(out_times, which, strict=True)):
        rows = _near(residuals[w].time, float(t), time_scale)
        key = (int(w), np.packbits(rows).tobytes())
        if key not in sets:
            sets[key] = len(chosen)
            chosen.append((int(w), rows))
        slot[i] = sets[key]
    return chosen, slot


def case_increments(
    residuals: tuple[Residuals, ...],
    window_variance: np.ndarray | None,
    config: FieldAnalysis,
    schema: SurrogateSchema,
    out_times: np.ndarray,
    which: np.ndarray,
) -> FieldIncrements:
    """Estimate ``Q`` for a case and solve each output time's system (eagerly: small).

    ``window_variance`` (W, C): the method's own variance estimate (normalized), used
    where ``config.variance`` is ``None``; without it, :func:`innovation_variance`.
    ``out_times`` (T,): the output times in latent steps; ``which`` (T,) the window
    supplying each.
    """
    metric, n_ch = metric_of(schema), schema.n_channels
    if config.variance is not None:
        scale = np.asarray(schema.output_norm.scale, float)
        given = [config.variance.get(v, 0.0) for v in schema.variables]
        variance = np.tile(np.asarray(given, float) / scale**2, (len(residuals), 1))
    elif window_variance is not None:
        variance = np.clip(np.nan_to_num(window_variance, nan=0.0), 0.0, None)
        for w, r in enumerate(residuals):  # calibrated backgrounds: their own residuals' level
            if r.model_weight is not None and (r.model_weight < 1).any():
                own, blended = innovation_variance([r], n_ch), r.model_weight < 1
                variance[w, blended] = own[blended]
    else:
        variance = np.tile(innovation_variance(list(residuals), n_ch), (len(residuals), 1))
    if config.length_scale is None:
        length = _fitted_lengths(list(residuals), variance.mean(0), metric)
    else:
        length = np.full(n_ch, float(config.length_scale))
    tsc = None if config.time_scale is None else config.time_scale / schema.time_step
    chosen, slot = _slots(residuals, out_times, which, tsc)
    gains, memo = [], {}
    for w, near in chosen:
        r = residuals[w]
        per_channel: list[Gain | SparseGain | None] = []
        for c in range(n_ch):
            rows = near & (r.channel == c)
            _check_system_size(r.points[rows], float(length[c]), metric, w, schema.variables[c])
            per_channel.append(
                window_gain(
                    torch.as_tensor(r.points[rows]),
                    torch.as_tensor(r.noise[rows]),
                    torch.as_tensor(r.member[rows]),
                    float(variance[w, c]),
                    float(length[c]),
                    metric,
                    dense_max=DENSE_MAX,
                    memo=memo,
                )
                if rows.any()
                else None
            )
        gains.append(tuple(per_channel))
    windows = [w for w, _ in chosen]
    background = weight = None
    if residuals[0].background is not None:
        background = np.stack([residuals[w].background for w in windows])
    if residuals[0].model_weight is not None:
        weight = np.stack([residuals[w].model_weight for w in windows])
    scale = draw_scale(gains, n_ch) if config.cross_validation else None
    return FieldIncrements(
        tuple(gains),
        slot,
        variance[windows],
        length,
        metric,
        background,
        config.draws,
        weight,
        scale,
    )
