"""The quality report of a fit: held-out full-trajectory errors, training time, stability.

:class:`FitReport` is what :meth:`xlevda.LDNet.fit` measures at the end of every fit
(:func:`xlevda.surrogates.quality.measure_quality`), saves in the surrogate file and
exposes as ``model.quality``.  The record holds plain numbers (no torch, no xarray);
:meth:`FitReport.to_dataset` labels them as an xarray Dataset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xlevda.errors import ConfigError
from xlevda.validate import check_real

__all__ = ["DEFINITION", "LINEAR_STEP", "FitReport"]

DEFINITION = (
    "||prediction - truth||_2 over the held-out runs and every point, per variable and frame, "
    "divided by the root mean square over the frames of ||truth||_2 (so a frame whose truth "
    "is zero is measured; the all-frame error is the root mean square of the frames'); the "
    "held-out "
    "runs are rolled out from their parameters over all their frames (with learned initial "
    "states, from the latent state fitted to their first frame)"
)
"""What :attr:`FitReport.frame_errors` measures."""

LINEAR_STEP = "linear latent step"
""":attr:`FitReport.radius_of` of linear latent dynamics."""


@dataclass(frozen=True)
class FitReport:
    """Quality of a fitted surrogate on runs it was not fitted on.

    Attributes
    ----------
    variables : tuple of str
        The surrogate's variables, in its channel order.
    n_frames : int
        Frames per run (the length of the rolled-out trajectories).
    frame_errors : tuple of tuple of float, or None
        Relative RMSE per variable and frame (``variables`` x frames), see
        :data:`DEFINITION`; ``nan`` only for a variable whose truth is zero in every frame.
        ``None`` when the fit had no held-out runs.
    overall_errors : tuple of float, or None
        The same over all frames at once, per variable; ``None`` without held-out runs.
    heldout_runs : tuple of int
        Indices (along the run dimension of the training data) of the held-out runs;
        empty when there were none.
    seconds : float
        Wall time of the fit (not of measuring this report).
    spectral_radius : float or None
        Largest modulus of the eigenvalues of the latent step matrix ``I + dt A`` of
        linear latent dynamics (above 1: the forecast grows without bound), or of the
        step's Jacobian over the states :attr:`radius_of` names (polynomial latent
        dynamics); ``None`` for neural-network dynamics.
    radius_of : str
        What :attr:`spectral_radius` is of: :data:`LINEAR_STEP`, or a description.
    refitted : bool
        The errors were measured on a model fitted without the held-out runs, and the
        returned model was then refitted on all runs (``LinearDynamicsConfig.refit``).
    note : str
        Why there are no held-out errors, or other context.
    land_fraction, gap_fraction : float
        Missing training values (``LDNet.fit(..., missing="mask")``): the fraction of
        the archive's points left out as land (NaN in every run, frame and variable),
        and of the values on the other points that were NaN (gaps, left out of the
        loss and of these errors); 0 for complete data.

    Examples
    --------
    >>> r = FitReport(("eta",), 2, ((0.1, 0.3),), (0.25,), (4, 7), seconds=2.0)
    >>> r.mean_errors, r.worst_errors, r.worst_frames, r.n_heldout_runs
    ((0.2,), (0.3,), (1,), 2)
    >>> FitReport.from_dict(r.to_dict()) == r
    True
    """

    variables: tuple[str, ...]
    n_frames: int
    frame_errors: tuple[tuple[float, ...], ...] | None
    overall_errors: tuple[float, ...] | None
    heldout_runs: tuple[int, ...]
    seconds: float
    spectral_radius: float | None = None
    refitted: bool = False
    note: str = ""
    land_fraction: float = 0.0
    gap_fraction: float = 0.0
    radius_of: str = LINEAR_STEP

    def __post_init__(self) -> None:
        has = self.frame_errors is not None
        if has != (self.overall_errors is not None) or has != bool(self.heldout_runs):
            raise ConfigError(
                "FitReport: frame_errors, overall_errors and heldout_runs must all be given "
                f"or all be empty, got frame_errors={'set' if has else None}, overall_errors="
                f"{self.overall_errors}, heldout_runs={self.heldout_runs}"
            )
        if not has and not self.note:
            raise ConfigError("FitReport without held-out runs needs a note saying why")
        n_vars = len(self.variables)
        if not isinstance(self.n_frames, int) or self.n_frames < 1:
            raise ConfigError(f"FitReport.n_frames must be an int >= 1, got {self.n_frames!r}")
        if has and (
            len(self.frame_errors) != n_vars
            or len(self.overall_errors) != n_vars
            or any(len(e) != self.n_frames for e in self.frame_errors)
        ):
            raise ConfigError(
                f"FitReport: frame_errors must be {n_vars} rows (one per variable of "
                f"{self.variables}) of n_frames={self.n_frames} numbers, and overall_errors "
                f"{n_vars} numbers"
            )
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ConfigError(f"FitReport.seconds must be finite and >= 0, got {self.seconds}")
        for name in ("land_fraction", "gap_fraction"):
            check_real(f"FitReport.{name}", getattr(self, name), 0.0, 1.0)

    @property
    def n_heldout_runs(self) -> int:
        """Number of held-out runs the errors were measured on."""
        return len(self.heldout_runs)

    @property
    def mean_errors(self) -> tuple[float, ...] | None:
        """Mean over frames of :attr:`frame_errors` per variable (``None`` without held-out)."""
        if self.frame_errors is None:
            return None
        return tuple(float(np.mean(e)) for e in self.frame_errors)

    @property
    def worst_errors(self) -> tuple[float, ...] | None:
        """Largest :attr:`frame_errors` per variable (``None`` without held-out runs)."""
        if self.frame_errors is None:
            return None
        return tuple(float(np.max(e)) for e in self.frame_errors)

    @property
    def worst_frames(self) -> tuple[int, ...] | None:
        """Frame (from 0) of :attr:`worst_errors`, per variable."""
        if self.frame_errors is None:
            return None
        return tuple(int(np.argmax(e)) for e in self.frame_errors)

    @property
    def unstable(self) -> bool:
        """Whether the latent step (its Jacobian) has spectral radius above 1."""
        return self.spectral_radius is not None and self.spectral_radius > 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain containers, as stored in the surrogate file (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitReport:
        """Rebuild from :meth:`to_dict` output."""

        def rows(x):
            return None if x is None else tuple(tuple(float(v) for v in r) for r in x)

        overall = data["overall_errors"]
        return cls(
            variables=tuple(data["variables"]),
            n_frames=int(data["n_frames"]),
            frame_errors=rows(data["frame_errors"]),
            overall_errors=None if overall is None else tuple(float(v) for v in overall),
            heldout_runs=tuple(int(i) for i in data["heldout_runs"]),
            seconds=float(data["seconds"]),
            spectral_radius=data["spectral_radius"],
            refitted=bool(data["refitted"]),
            note=str(data["note"]),
            land_fraction=float(data.get("land_fraction", 0.0)),
            gap_fraction=float(data.get("gap_fraction", 0.0)),
            radius_of=str(data.get("radius_of", LINEAR_STEP)),
        )

    def summary(self) -> str:
        """A short table: per variable the mean and worst frame error and all frames at once.

        Examples
        --------
        >>> print(FitReport(("eta",), 2, ((0.1, 0.3),), (0.25,), (4,), seconds=2.0).summary())
        fit quality on 1 held-out run(s), whole trajectories of 2 frames (fitted in 2.0 s)
          variable      mean  worst (frame)    all frames
          eta         0.2000  0.3000 (1)           0.2500
        """
        if self.frame_errors is None:
            lines = [f"fit quality: {self.note} (fitted in {self.seconds:.1f} s)"]
        else:
            lines = [
                f"fit quality on {self.n_heldout_runs} held-out run(s), whole trajectories of "
                f"{self.n_frames} frames (fitted in {self.seconds:.1f} s)",
                f"  {'variable':<10}{'mean':>8}  {'worst (frame)':<15}{'all frames':>12}",
            ]
            for name, mean, worst, frame, overall in zip(
                self.variables,
                self.mean_errors or (),
                self.worst_errors or (),
                self.worst_frames or (),
                self.overall_errors or (),
                strict=True,
            ):
                worst_at = f"{worst:.4f} ({frame})"
                lines.append(f"  {name:<10}{mean:>8.4f}  {worst_at:<15}{overall:>12.4f}")
            if self.note:
                lines.append(f"  ({self.note})")
        if self.land_fraction or self.gap_fraction:
            lines.append(
                f"  missing training values: {self.land_fraction:.1%} of the points land "
                f"(left out), {self.gap_fraction:.1%} of the other values gaps (masked)"
            )
        if self.spectral_radius is not None:
            verdict = "UNSTABLE: forecasts grow" if self.unstable else "stable"
            lines.append(
                f"  {self.radius_of}: spectral radius {self.spectral_radius:.4f} ({verdict})"
            )
        return "\n".join(lines)

    def to_dataset(self, times: Any = None):
        """The per-variable, per-frame errors as an xarray Dataset over ``frame``.

        Parameters
        ----------
        times : array-like, optional
            The frames' times (e.g. ``model.frame_times()``), added as a ``time``
            coordinate on ``frame``.

        Returns
        -------
        Dataset
            One variable per surrogate variable (all NaN without held-out runs);
            the summary and the other fields in ``attrs``.

        Examples
        --------
        >>> r = FitReport(("eta",), 2, ((0.1, 0.3),), (0.25,), (4,), seconds=2.0)
        >>> r.to_dataset(times=[0.0, 60.0]).eta.sel(frame=1).item()
        0.3
        """
        import xarray as xr  # the record itself stays xarray-free

        n = self.n_frames
        coords: dict[str, Any] = {"frame": np.arange(n)}
        if times is not None:
            coords["time"] = ("frame", np.asarray(times))
        data = {}
        for c, name in enumerate(self.variables):
            values = np.asarray(self.frame_errors[c]) if self.frame_errors is not None else np.nan
            data[name] = xr.DataArray(
                np.broadcast_to(values, (n,)).copy(),
                dims="frame",
                attrs={"long_name": f"held-out relative RMSE of {name}", "units": "1"},
            )
        attrs = {
            "definition": DEFINITION,
            "n_heldout_runs": self.n_heldout_runs,
            "heldout_runs": list(self.heldout_runs),
            "seconds": self.seconds,
            "refitted": int(self.refitted),
            "note": self.note,
            "summary": self.summary(),
        }
        if self.spectral_radius is not None:
            attrs["spectral_radius"] = self.spectral_radius
            attrs["radius_of"] = self.radius_of
        return xr.Dataset(data, coords=coords, attrs=attrs)
