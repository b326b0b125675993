"""Localization of an ensemble analysis: the option shared by the LETKF and 4DEnVar.

Observations are weighted per state element by the Gaspari-Cohn taper of their
distance (:func:`xlevda.core.taper.gaspari_cohn`), zero beyond ``radius``; the local
analyses are done ``chunk`` state elements at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xlevda.errors import ConfigError

__all__ = ["Localization"]


@dataclass(frozen=True)
class Localization:
    """Local analyses with a Gaspari-Cohn taper of the observation weights.

    Attributes
    ----------
    radius : float
        Distance beyond which an observation has no influence on a state element,
        finite and > 0, in the units of the distances the analysis is given: the
        model's ``distances`` for the methods (e.g. km for
        :class:`xlevda.systems.tsunami_model.TsunamiModel`, sites for Lorenz-96), or
        ``state_coords`` of :func:`xlevda.core.envar.fourdenvar` (grid cells for the
        paper's ``r = 2``).  The taper falls from 1 at distance 0
        to 0 at this radius (its half-width is ``radius / 2``); DAPPER's ``loc_rad``
        (taper ``exp(-1/2)`` at ``loc_rad``) corresponds to ``radius = 2 * 1.82 * loc_rad``.
    chunk : int
        State elements analysed per batch (>= 1); bounds the memory of the local
        analyses (about ``chunk * K * n_obs`` values).

    Examples
    --------
    >>> Localization(radius=2.0).chunk
    1024
    """

    radius: float
    chunk: int = 1024

    def __post_init__(self) -> None:
        r = self.radius
        if isinstance(r, bool) or not isinstance(r, int | float):
            raise ConfigError(f"Localization.radius={r!r} is invalid: must be a finite number > 0")
        if not (math.isfinite(r) and r > 0):
            raise ConfigError(
                f"Localization.radius={r!r} is out of range: must be a finite number > 0"
            )
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ConfigError(
                f"Localization.chunk={self.chunk!r} is out of range: must be an integer >= 1"
            )
