"""The values a method's windows pass along the chain, and the cycle they add up to.

A method (:class:`xlevda.methods.base.Method`) starts from an :class:`Ensemble`,
analyses one :class:`Window` at a time into an :class:`Analysis` (whose last ensemble
is the next window's background), and the driver (:mod:`xlevda.driver`) concatenates
the analyses of a case into a :class:`Cycle`, which the output builder
(:mod:`xlevda.io`) decodes.  Also the dense observation window of the variational
methods (:func:`obs_window`).  Torch and numpy only (no xarray); every type here is
torch-free, so it travels between dask workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from xlevda._obs import ObsTable
from xlevda.core.window import ObsWindow

__all__ = ["Analysis", "Cycle", "Ensemble", "Window", "group_rows", "obs_window"]


@dataclass(frozen=True)
class Ensemble:
    """An ensemble at one latent index.

    Attributes
    ----------
    anchor : int
        Latent index (frame) of ``z``; ``-1`` is the shifted start ``s_{-1} = 0``.
    z : ndarray, shape (K, d_z), optional
        Augmented states ``(s, u)``, parameters normalized, float64; ``None`` where the
        method draws its members in its first window (LD-EnSF).
    not_fitted : int, optional
        For an ensemble fitted to field backgrounds: the members whose fit failed or
        who had no finite value (they keep the surrogate's rollout).
    carry : optional
        What the method hands on to its next window besides ``z``, torch-free (LD-EnSF:
        its random generator's state and the case's pseudo-observations).
    """

    anchor: int
    z: np.ndarray | None
    not_fitted: int | None = None
    carry: Any = None


@dataclass(frozen=True)
class Window:
    """What a method analyses in one window of one case.

    Attributes
    ----------
    index : int
        Position of the window in the case's chain (0 first).
    anchor : int
        Latent index of the window-initial state.
    obs : ObsTable
        The window's observations.
    """

    index: int
    anchor: int
    obs: ObsTable


@dataclass(frozen=True)
class Analysis:
    """A window's analyses (one for every method so far).

    Attributes
    ----------
    anchors : ndarray, shape (A,)
        Latent index of each analysis.
    z : ndarray, shape (A, K, d_z)
        Analysis ensembles, float64; the last one is the next window's background.
    diagnostics : dict of str to ndarray
        Per analysis, ``(A, K)`` or ``(A,)``; long names in the method's ``diagnostics``.
    n_obs : ndarray, shape (A,)
        Observed values behind each analysis.
    excess : ndarray, shape (A, 4, C), optional
        LEVDA's :func:`~xlevda.core.levda.observed_excess` (mean, count, noise, leverage)
        per channel, for the model-error term.
    residuals : Residuals, optional
        The residuals the window leaves at its observations, for the field analysis
        (:class:`~xlevda.field_analysis.FieldAnalysis`; one analysis per window).
    carry : optional
        The next window's :attr:`Ensemble.carry`.
    departures : WindowDepartures, optional
        The window's observations predicted by its background and its analysis, and
        which it used (:mod:`xlevda.departures`; set by the driver).
    """

    anchors: np.ndarray
    z: np.ndarray
    diagnostics: dict[str, np.ndarray]
    n_obs: np.ndarray
    excess: np.ndarray | None = None
    carry: Any = None
    residuals: Any = None
    departures: Any = None

    @property
    def ensemble(self) -> Ensemble:
        """The last analysis: the background of the next window."""
        return Ensemble(int(self.anchors[-1]), self.z[-1], carry=self.carry)


@dataclass(frozen=True)
class Cycle:
    """Result of cycling the windows of one case (torch-free arrays)."""

    anchors: np.ndarray  # (W,)
    z_analysis: np.ndarray  # (W, K, d_z)
    diagnostics: dict[str, np.ndarray]  # name -> (W, K) or (W,)
    n_obs: np.ndarray  # (W,)
    names: dict[str, str] = field(default_factory=dict)  # long names of method diagnostics
    excess: np.ndarray | None = None  # (W, C) observed_excess, normalized units; NaN: unobserved
    excess_count: np.ndarray | None = None  # (W, C) observed values behind it
    excess_noise: np.ndarray | None = None  # (W, C) mean observation error variance behind it
    excess_leverage: np.ndarray | None = None  # (W, C) its variance per unit term variance
    seed: int = 0  # the case's seed
    residuals: tuple | None = None  # per window: Residuals of the field analysis
    departures: Any = None  # CaseDepartures of every observation (xlevda.departures)


def group_rows(labels: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct labels (sorted) and, for each, the rows carrying it (in row order).

    One sort instead of a scan of all rows per label.

    Examples
    --------
    >>> values, rows = group_rows(np.array([3, 1, 3, 2, 1]))
    >>> values.tolist(), [r.tolist() for r in rows]
    ([1, 2, 3], [[1, 4], [3], [0, 2]])
    """
    values, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(values) + 1))
    return values, [order[bounds[i] : bounds[i + 1]] for i in range(len(values))]


def obs_window(table: ObsTable, anchor: int, n_channels: int, dtype, device) -> ObsWindow:
    """Dense padded window: one row per distinct time, one column per distinct point.

    Repeated observations of one value (same time, place and variable) are
    merged exactly: weights add and values are weight-averaged, which leaves the
    minimizer of the cost unchanged.
    """
    key = table.step + table.frac
    times, groups = group_rows(key)
    per_time = []
    for rows in groups:
        pts, p_idx = np.unique(table.points[rows], axis=0, return_inverse=True)
        per_time.append((rows, pts, p_idx.ravel()))
    n_pts = max(len(p) for _, p, _ in per_time)
    n_c = table.points.shape[1]
    points = np.zeros((len(times), n_pts, n_c))
    wsum = np.zeros((len(times), n_pts, n_channels))
    wval = np.zeros_like(wsum)
    for i, (rows, pts, p_idx) in enumerate(per_time):
        points[i, : len(pts)] = pts
        points[i, len(pts) :] = pts[0]  # padding: a valid point, weighted by 0
        w = 1.0 / table.std[rows] ** 2
        np.add.at(wsum[i], (p_idx, table.channel[rows]), w)
        np.add.at(wval[i], (p_idx, table.channel[rows]), w * table.value[rows])
    values = np.divide(wval, wsum, out=np.zeros_like(wval), where=wsum > 0)
    first = table.step[np.searchsorted(key, times)]

    def t(x, dt=dtype):
        return torch.as_tensor(x, dtype=dt, device=device)

    return ObsWindow(
        step=torch.as_tensor(first - anchor, dtype=torch.int64, device=device),
        frac=t(times - first),
        points=t(points),
        values=t(values),
        weight=t(wsum),
    )
