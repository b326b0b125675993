"""Per-observation departures from the background and the analysis, and the used flags.

For every window the driver (:mod:`xlevda.driver`) predicts the window's
observations from two ensembles through the model (:func:`predict`: each member run
from its anchor to the observation's time, eq. 17 between steps, decoded at its
place): the background (the previous window's analysis, or the initial ensemble,
before any inflation) and the window's analysis (:attr:`~xlevda.cycle.Analysis.ensemble`).
Their members' mean and spread at each observation are the standard diagnostics of
DART and JEDI: ``O - B = y - mean_k H(x_k^b)`` and ``O - A = y - mean_k H(x_k^a)``.
The same predictions serve the gross-error check (:mod:`xlevda.quality_control`), which
runs before the analysis.  The values are those of the ensemble's states as the model
decodes them, before a method's field analysis or model-error draws.

An observation in several windows (overlapping LEVDA windows; LD-EnSF's first
window, which encodes them all) takes the values of the last window that holds it.
Torch and numpy only (no xarray); the output variables: :mod:`xlevda.obs_output`.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from xlevda._obs import ObsTable
from xlevda.core.dynamics import interpolate_trajectory, trajectory
from xlevda.cycle import Ensemble, group_rows
from xlevda.errors import ConfigError, ObservationError
from xlevda.field_increments import FieldIncrements, TermCache
from xlevda.methods.base import background_state
from xlevda.quality_control import GrossErrorCheck
from xlevda.surrogates.protocol import Surrogate

__all__ = [
    "CaseDepartures",
    "WindowDepartures",
    "case_departures",
    "check_quality_control",
    "field_at_observations",
    "forecast",
    "observation_times",
    "predict",
    "prepared_points",
    "screen",
    "summary",
    "warn_rejected",
]


@dataclass(frozen=True)
class WindowDepartures:
    """One window's predictions of its observations (normalized units, torch-free).

    Attributes
    ----------
    rows : ndarray (M_w,) of int
        The observations: rows of the case's :class:`~xlevda._obs.ObsTable`.
    background, analysis : ndarray (2, M_w)
        Members' mean and standard deviation of ``H(x)`` of the background and of the
        analysis; NaN where the method's ensemble predicts nothing.
    used : ndarray (M_w,) of bool
        Whether the window's analysis assimilated the observation (``False``:
        rejected by the gross-error check).
    """

    rows: np.ndarray
    background: np.ndarray
    analysis: np.ndarray
    used: np.ndarray


@dataclass(frozen=True)
class CaseDepartures:
    """Every observation of a case: the values of the last window that holds it.

    Attributes
    ----------
    window : ndarray (M,) of int
        That window's index (``-1``: in no window).
    background, analysis : ndarray (2, M)
        Mean and spread of ``H(x)`` (normalized units), as :class:`WindowDepartures`.
    used : ndarray (M,) of bool
    rejected : ndarray (W,) of int
        Observations each window rejected.
    """

    window: np.ndarray
    background: np.ndarray
    analysis: np.ndarray
    used: np.ndarray
    rejected: np.ndarray


_PREPARED: weakref.WeakKeyDictionary[Any, dict[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()
_PREPARED_SETS = 8  # point sets kept per model: fixed sensors need one


def prepared_points(model: Surrogate, places: np.ndarray, dtype, device) -> torch.Tensor:
    """``model.prepare_points`` of ``places`` (P, n_coords), cached per model (weakly) for the
    few sets of places the windows of an analysis share (a fixed network: one).

    Examples
    --------
    >>> class Model:
    ...     def prepare_points(self, p):
    ...         return p * 2
    >>> m, places = Model(), np.ones((2, 1))
    >>> first = prepared_points(m, places, torch.float64, "cpu")
    >>> first is prepared_points(m, places, torch.float64, "cpu")
    True
    """
    key = (places.shape, places.tobytes(), dtype, str(device))
    try:
        with _PREPARED_LOCK:
            cache = _PREPARED.setdefault(model, {})
            found = cache.get(key)
    except TypeError:  # a model that cannot be weakly referenced or hashed: not cached
        cache, found = {}, None
    if found is not None:
        return found
    with torch.no_grad():
        found = model.prepare_points(torch.as_tensor(places, dtype=dtype, device=device))
    with _PREPARED_LOCK:
        if len(cache) >= _PREPARED_SETS:
            cache.pop(next(iter(cache)))
        cache[key] = found
    return found


def forecast(model: Surrogate, ensemble: Ensemble, anchor: int, run: Any) -> Ensemble:
    """``ensemble`` run forward to ``anchor`` (:func:`~xlevda.methods.base.background_state`),
    its other fields kept: what a method's ``analyse`` computes first from its background."""
    if ensemble.z is None or ensemble.anchor == anchor:
        return ensemble
    z = background_state(model, ensemble, anchor, run).cpu().double().numpy()
    return replace(ensemble, anchor=anchor, z=z)


def predict(model: Surrogate, ensemble: Ensemble, table: ObsTable, run: Any) -> np.ndarray | None:
    """``H(x_k)`` (K, M) float64 at the observations of ``table`` from the ensemble at its anchor.

    Each member is run from ``ensemble.anchor`` to the observation times (linear between
    the Euler steps: eq. 17) and decoded at their places, in the run's dtype and device.
    ``None`` where the ensemble has no states yet (LD-EnSF's first window).

    Examples
    --------
    >>> from xlevda.run import RunOptions
    >>> class Const:  # one channel: the decoded value is the state's first entry
    ...     latent_dim, param_dim, dt = 1, 0, torch.tensor(1.0)
    ...     def vector_field(self, s, u):
    ...         return torch.ones_like(s)
    ...     def prepare_points(self, p):
    ...         return p
    ...     def decode_prepared(self, s, prepared):
    ...         return s[..., None, :].expand(*s.shape[:-1], prepared.shape[-2], 1)
    >>> table = ObsTable(np.zeros(2), np.array([0, 2]), np.array([0.0, 0.5]), np.zeros((2, 1)),
    ...                  np.zeros(2, int), np.zeros(2), np.ones(2))
    >>> predict(Const(), Ensemble(0, np.array([[0.0], [1.0]])), table, RunOptions()).tolist()
    [[0.0, 2.5], [1.0, 3.5]]
    """
    if ensemble.z is None:
        return None
    k = ensemble.z.shape[0]
    out = np.full((k, len(table)), np.nan)
    if not len(table):
        return out
    rel = table.step - ensemble.anchor
    n = int((rel + (table.frac > 0)).max())
    to = {"dtype": run.torch_dtype, "device": run.device}
    with torch.no_grad():
        traj = trajectory(model, torch.as_tensor(ensemble.z, **to), n)  # (K, n+1, d_z)
        _, groups = group_rows(table.step + table.frac)
        for rows in groups:
            i = rows[:1]
            z = interpolate_trajectory(
                traj,
                torch.as_tensor(rel[i], device=run.device),
                torch.as_tensor(table.frac[i], **to),
            )[:, 0]
            places, place = np.unique(table.points[rows], axis=0, return_inverse=True)
            prepared = prepared_points(model, places, run.torch_dtype, run.device)
            fields = model.decode_prepared(z[:, : model.latent_dim], prepared)  # (K, P, C)
            index = (torch.as_tensor(place.ravel()), torch.as_tensor(table.channel[rows]))
            picked = fields[:, index[0].to(fields.device), index[1].to(fields.device)]
            out[:, rows] = picked.double().cpu().numpy()
    return out


def summary(predicted: np.ndarray | None, n: int) -> np.ndarray:
    """Mean and standard deviation (2, n) over the finite members of ``predicted`` (K, n).

    A member whose prediction is not finite (a failed forecast) is left out; fewer than
    two finite members give a NaN spread, none a NaN mean.

    Examples
    --------
    >>> summary(np.array([[1.0, np.nan], [3.0, 2.0]]), 2).tolist()
    [[2.0, 2.0], [1.4142135623730951, nan]]
    """
    if predicted is None:
        return np.full((2, n), np.nan)
    finite = np.isfinite(predicted)
    count = finite.sum(0)
    values = np.where(finite, predicted, 0.0)
    mean = np.divide(values.sum(0), count, out=np.full(n, np.nan), where=count > 0)
    square = np.where(finite, np.square(predicted - mean), 0.0).sum(0)
    spread = np.sqrt(np.divide(square, count - 1, out=np.full(n, np.nan), where=count > 1))
    return np.stack([mean, spread])


def screen(
    check: GrossErrorCheck | None, table: ObsTable, background: np.ndarray, window: int
) -> np.ndarray:
    """Which of the window's observations its analysis uses (M,), given ``background`` (2, M).

    Raises
    ------
    ObservationError
        Where the check rejects every observation of a window that has some.
    """
    if check is None:
        return np.ones(len(table), dtype=bool)
    used = check.used(table.value - background[0], background[1], table.std)
    if len(table) and not used.any():
        raise ObservationError(
            f"window {window}: the gross-error check (threshold={check.threshold}) rejects all "
            f"{len(table)} observations: the background is far from every one; raise "
            "GrossErrorCheck.threshold or check the observations' units and errors"
        )
    return used


def case_departures(n_rows: int, windows: Sequence[WindowDepartures]) -> CaseDepartures:
    """Each of a case's ``n_rows`` observations with the last window (in order) that holds it.

    Examples
    --------
    >>> a = WindowDepartures(np.array([0, 1]), np.zeros((2, 2)), np.ones((2, 2)),
    ...                      np.array([True, False]))
    >>> b = WindowDepartures(np.array([1]), np.full((2, 1), 5.0), np.ones((2, 1)),
    ...                      np.array([True]))
    >>> out = case_departures(3, [a, b])
    >>> out.window.tolist(), out.background[0].tolist(), out.used.tolist(), out.rejected.tolist()
    ([0, 1, -1], [0.0, 5.0, nan], [True, True, False], [1, 0])
    """
    window = np.full(n_rows, -1, dtype=np.int64)
    background, analysis = np.full((2, n_rows), np.nan), np.full((2, n_rows), np.nan)
    used = np.zeros(n_rows, dtype=bool)
    for w, d in enumerate(windows):
        window[d.rows] = w
        background[:, d.rows], analysis[:, d.rows] = d.background, d.analysis
        used[d.rows] = d.used
    rejected = np.array([int((~d.used).sum()) for d in windows], dtype=np.int64)
    return CaseDepartures(window, background, analysis, used, rejected)


def check_quality_control(method: Any, check: GrossErrorCheck | None) -> None:
    """Raise :class:`~xlevda.errors.ConfigError` if ``method`` cannot honour ``check``."""
    if check is not None and not method.screens_observations:
        raise ConfigError(
            f"RunOptions.quality_control={check!r}: {method.name} cannot leave observations "
            "out of its analyses (LD-EnSF's encoder reads its fixed sensor network; OI "
            "has no ensemble to predict them): use quality_control=None with this method"
        )


def warn_rejected(cycles: Sequence[Any], check: GrossErrorCheck | None) -> None:
    """One :class:`UserWarning` counting the observations the gross-error check rejected."""
    if check is None:
        return
    n = sum(int((~c.departures.used).sum()) for c in cycles)
    if n:
        total = sum(len(c.departures.used) for c in cycles)
        warnings.warn(
            f"GrossErrorCheck(threshold={check.threshold}) rejected {n} of {total} observations "
            "(|O - B| beyond threshold x sqrt(background spread^2 + error^2)): left out of the "
            "analyses, kept in the output with <variable>_obs_flag = 1 and counted in "
            "window_n_obs_rejected",
            UserWarning,
            stacklevel=3,
        )


def observation_times(table: ObsTable, departures: CaseDepartures) -> tuple[np.ndarray, ...]:
    """The distinct (time, window) pairs of a case's observations: times (G,) in latent steps,
    windows (G,), and the rows of each (a list), for the field analysis at the observations."""
    key = np.stack([table.step + table.frac, departures.window], -1)
    _, rows = group_rows(np.unique(key, axis=0, return_inverse=True)[1].ravel())
    first = [r[0] for r in rows]
    return key[first, 0], key[first, 1].astype(np.int64), rows


def field_at_observations(
    increments: FieldIncrements,
    first: int,
    table: ObsTable,
    departures: CaseDepartures,
    model_free: bool,
    members: int,
) -> np.ndarray:
    """Members' mean (M,) of the analysis fields at the observations (normalized units).

    ``increments`` covers, from time index ``first`` on, the pairs of
    :func:`observation_times`: the value is the model's weight times the analysis'
    ``mean_k H(x_k)`` (none where ``model_free``) plus the field analysis' mean
    increment, without its draws, as :func:`xlevda.decode.decode_block` makes the
    output's fields.
    """
    uncached = replace(increments, cache=TermCache(budget=0), draws=False)  # any points
    out = np.full(len(table), np.nan)
    for g, rows in enumerate(observation_times(table, departures)[2]):
        t = slice(first + g, first + g + 1)
        for c in np.unique(table.channel[rows]):
            r = rows[table.channel[rows] == c]
            points = torch.as_tensor(table.points[r], dtype=torch.float64)
            inc, _ = uncached.block(int(c), points, t, slice(0, members))
            weight = increments.model_weight(int(c), t)
            model = 0.0 if model_free else departures.analysis[0, r]
            out[r] = (1.0 if weight is None else weight[0]) * model + inc[0].mean(0).numpy()
    return out
