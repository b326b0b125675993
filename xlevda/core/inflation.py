"""Inflation of a background ensemble's perturbations, the one option every method shares.

``dx_k <- multiplicative * dx_k + eps_k`` with ``eps_k ~ N(0, additive^2 I)``, applied
to the perturbations ``dx_k = x_k - xbar`` before the analysis: it widens the prior
covariance, never the posterior directly.  Where the additive noise comes from is
not part of the option: each method draws it from its run's seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xlevda.errors import ConfigError

__all__ = ["INFLATION_STREAM", "Inflation"]

INFLATION_STREAM = 0
"""Stream of an integer seed (:func:`xlevda.core.rng.generator`) for additive inflation."""


@dataclass(frozen=True)
class Inflation:
    """Multiplicative and additive inflation of the background perturbations.

    Attributes
    ----------
    multiplicative : float
        Factor on the perturbations, in ``[1, 100]`` (the prior covariance is
        multiplied by its square; typical factors are 1.0 to 1.5, and far larger
        ones overflow the ensemble-space solve).
    additive : float
        Standard deviation of the noise added to each perturbation, in ``[0, 1e9]``,
        in the units of the method's state (normalized latent units for LEVDA, the
        state's own units for 4DEnVar); squares of larger noise overflow float32.
        Methods without additive inflation (LETKF, EnSF) refuse a value above 0.

    Examples
    --------
    >>> Inflation(multiplicative=1.1).additive
    0.0
    """

    multiplicative: float = 1.0
    additive: float = 0.0

    def __post_init__(self) -> None:
        for name, low, high in (("multiplicative", 1.0, 100.0), ("additive", 0.0, 1e9)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"Inflation.{name}={value!r} is invalid: must be a finite number >= "
                    f"{low:g} and <= {high:g}"
                )
            if not (math.isfinite(value) and low <= value <= high):
                raise ConfigError(
                    f"Inflation.{name}={value!r} is out of range: must be a finite number >= "
                    f"{low:g} and <= {high:g}"
                )
