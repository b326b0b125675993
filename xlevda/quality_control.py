"""Quality control of the observations before each window's analysis: the gross-error check.

``RunOptions(quality_control=GrossErrorCheck(threshold))`` rejects, in each window and
before its analysis, every observation whose departure from the background exceeds
``threshold`` times its expected spread (the background check of DART's
``outlier_threshold`` and JEDI's ``Background Check``)::

    |y - mean_k H(x_k^b)| > threshold * sqrt(var_k H(x_k^b) + sigma^2)

with ``H(x_k^b)`` the window's background member ``k`` (the previous analysis run
forward, before inflation) at the observation and ``sigma`` its error standard
deviation.  The rejected observations are left out of the window's analysis and kept
in the output, flagged (:mod:`xlevda.departures`).  Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xlevda.validate import check_real

__all__ = ["GrossErrorCheck"]


@dataclass(frozen=True)
class GrossErrorCheck:
    """Reject observations whose background departure exceeds ``threshold`` expected spreads.

    Attributes
    ----------
    threshold : float
        Multiple (> 0) of ``sqrt(background spread^2 + observation error variance)``
        beyond which an observation is rejected; 3 is DART's and JEDI's usual value.

    Examples
    --------
    >>> check = GrossErrorCheck(threshold=3.0)
    >>> # limits 3 sqrt(spread^2 + 1): 4.24, 4.24, 9.49
    >>> check.used(np.array([4.0, -5.0, 9.0]), np.array([1.0, 1.0, 3.0]), np.ones(3)).tolist()
    [True, False, True]
    """

    threshold: float = 3.0

    def __post_init__(self) -> None:
        check_real("GrossErrorCheck.threshold", self.threshold, 0.0, low_open=True)
        object.__setattr__(self, "threshold", float(self.threshold))

    def used(self, departure: np.ndarray, spread: np.ndarray, std: np.ndarray) -> np.ndarray:
        """Which observations pass (bool, (M,)) given their background departure ``y - Hx``,
        the background's spread of ``H(x)`` and their error ``std`` (any one unit).

        A departure that is not finite (a background that failed there) passes: the
        check cannot judge it.
        """
        limit = self.threshold * np.sqrt(np.square(spread) + np.square(std))
        return ~(np.abs(departure) > limit)
