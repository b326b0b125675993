"""Typed configuration of an assimilation run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from xlevda.core.ensf import ScaledEnSFConfig
from xlevda.core.envar import FourDEnVarConfig
from xlevda.core.letkf import LETKFConfig
from xlevda.core.members import Inflation, MemberMode, Randomized, WarmStart
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.errors import ConfigError

__all__ = ["FullStateConfig", "LEVDAConfig", "ModelError", "OutputChunks"]


@dataclass(frozen=True)
class OutputChunks:
    """Dask chunk sizes of the decoded analysis fields.

    Attributes
    ----------
    time, member : int
        Output times and members decoded per task.
    """

    time: int = 8
    member: int = 25

    def __post_init__(self) -> None:
        for name in ("time", "member"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"OutputChunks.{name}={value!r}: expected an integer >= 1")


@dataclass(frozen=True)
class ModelError:
    """An additive model-error term in LEVDA's output fields, estimated from the data.

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
    >>> LEVDAConfig().model_error
    ModelError(pooled=True)
    """

    pooled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.pooled, bool):
            raise ConfigError(f"ModelError.pooled={self.pooled!r}: expected a bool")


@dataclass(frozen=True)
class LEVDAConfig:
    """Options of :func:`xlevda.api.assimilate` (LEVDA, paper section 3.2).

    Attributes
    ----------
    members : int
        Ensemble size ``K`` (>= 2).
    window : int
        ``tau``: distinct observation times per window (>= 1).
    window_stride : int, optional
        Observation times between window starts; ``None`` (= ``window``) gives
        non-overlapping windows, a smaller value overlapping ones.
    inflation_rho, inflation_sigma : float
        Multiplicative (``>= 1``) and additive (``>= 0``, normalized latent units)
        inflation of the background perturbations.
    mode : WarmStart or Randomized
        How members differ: randomized-maximum-likelihood members with perturbed
        prior centres and data (the default; each starts at its ensemble Kalman
        analysis, ``Randomized(start="background")`` at its background member as
        in the paper), or the paper's warm starts of one shared cost.  Warm-start
        members converge to one minimum wherever the cost is convex, so their
        spread collapses and cycling then stops with an error
        asking for inflation; randomized members sample the posterior in the
        linear-Gaussian case (see ``tests/core``).
    optimizer : LBFGSConfig or GaussNewtonConfig
        The batched solver of the K member problems.  The default L-BFGS stops a
        member when a step lowers its cost by less than ``1e-4`` of it: on the demo
        twin this halves the time of a tighter tolerance at equal accuracy
        (``benchmarks/levda_tolerance.py``, docs/results.md).  ``LBFGSConfig()``
        (the default of :func:`xlevda.core.levda.solve_window`) iterates until the
        cost stalls at round-off, the gradient reaches ``tol_grad`` or ``max_iter``.
    jacobian : {"forward", "pointwise"}
        How a ``GaussNewtonConfig`` optimizer gets its Jacobian: forward mode
        through the whole chain (best for separable decoders), or ``"pointwise"``
        (one decoder pass per channel; best for MLP neural-field decoders: on the
        tsunami twin with the MLP-decoder surrogate 52.9 s against 79.8 s for
        L-BFGS, docs/results.md).  Ignored by L-BFGS.
    seed : int
        Seed of the prior draws, the inflation noise and RML perturbations.
    dtype : {"float32", "float64"}
        Precision of the optimization, the decoding and the output fields (the
        parameter estimates are always float64).
    device : str
        Torch device of the optimization and decoding, e.g. ``"cpu"`` or ``"cuda"``.
    outside : {"error", "drop"}
        Observations outside the surrogate's domain: an error, or dropped with the
        count reported in the output attributes.
    member_dim : str
        Name of the ensemble dimension of the output.
    chunks : OutputChunks
        Chunking of the lazily decoded fields.
    model_error : ModelError or None
        Add the estimated model-error term to the members' fields (default), or
        ``None`` for the decoded surrogate states alone.

    Examples
    --------
    >>> LEVDAConfig(members=50, window=5).members
    50
    """

    members: int = 100
    window: int = 5
    window_stride: int | None = None
    inflation_rho: float = 1.0
    inflation_sigma: float = 0.0
    mode: MemberMode = field(default_factory=Randomized)
    optimizer: LBFGSConfig | GaussNewtonConfig = field(
        default_factory=lambda: LBFGSConfig(tol_cost=1e-4)
    )
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    outside: Literal["error", "drop"] = "error"
    member_dim: str = "member"
    chunks: OutputChunks = field(default_factory=OutputChunks)
    jacobian: Literal["forward", "pointwise"] = "forward"
    model_error: ModelError | None = field(default_factory=ModelError)

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int):
            raise ConfigError(f"members={self.members!r}: expected an integer >= 2")
        if self.jacobian not in ("forward", "pointwise"):
            raise ConfigError(f"jacobian={self.jacobian!r}: expected 'forward' or 'pointwise'")
        if self.members < 2:
            raise ConfigError(f"members K={self.members}: LEVDA needs at least 2 members")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window tau={self.window!r}: expected an integer >= 1")
        if self.window_stride is not None and not 1 <= self.window_stride <= self.window:
            raise ConfigError(
                f"window_stride={self.window_stride!r}: expected 1 <= stride <= "
                f"window={self.window}"
            )
        Inflation(self.inflation_rho, self.inflation_sigma)
        if not isinstance(self.mode, WarmStart | Randomized):
            raise ConfigError(f"mode={self.mode!r}: expected WarmStart() or Randomized(seed)")
        if not isinstance(self.optimizer, LBFGSConfig | GaussNewtonConfig):
            raise ConfigError(
                f"optimizer={self.optimizer!r}: expected LBFGSConfig or GaussNewtonConfig"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed={self.seed!r}: expected an int")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype={self.dtype!r}: expected 'float32' or 'float64'")
        if self.outside not in ("error", "drop"):
            raise ConfigError(f"outside={self.outside!r}: expected 'error' or 'drop'")
        if self.model_error is not None and not isinstance(self.model_error, ModelError):
            raise ConfigError(f"model_error={self.model_error!r}: expected ModelError() or None")

    def to_json(self) -> str:
        """The full configuration as JSON (stored in the output's attributes)."""

        def kind(obj: Any) -> dict[str, Any]:
            return {"type": type(obj).__name__, **asdict(obj)}

        data = asdict(self)
        data["mode"] = kind(self.mode)
        data["optimizer"] = kind(self.optimizer)
        data["model_error"] = None if self.model_error is None else kind(self.model_error)
        return json.dumps(data, sort_keys=True, default=str)


@dataclass(frozen=True)
class FullStateConfig:
    """A full-state ensemble method, with the simulator as the model (:mod:`xlevda.fullstate`).

    Attributes
    ----------
    method : LETKFConfig, ScaledEnSFConfig or FourDEnVarConfig
        The analysis: the ETKF (``localization_radius=None``) or LETKF; the EnSF in
        per-variable scaled coordinates; strong-constraint 4DEnVar (paper eq. 8-11).
        Localization radii are in the units of the model's ``distances`` (e.g. km
        for :class:`xlevda.systems.tsunami_model.TsunamiModel`, sites for Lorenz-96).
    members : int
        Ensemble size ``K`` (>= 2; 4DEnVar and the ETKF need ``K >= 2``, and an
        ensemble smaller than the number of observations relies on localization).
    window : int, optional
        Observation times per 4DEnVar window (default 5).  The filters analyse one
        observation time at a time: only ``None`` or 1 is accepted for them.
    seed : int
        Seed of the prior parameter draws, the EnSF noise and 4DEnVar's additive
        inflation (whose ``sigma`` is in the state's own units, the same for every
        variable).
    dtype : {"float32", "float64"}
        Precision of the ensemble and the output fields (default float64, as
        simulators run; float32 halves the size of written fields).
    device : str
        Torch device of the ensemble.
    outside : {"error", "drop"}
        Observations outside the model's domain.
    member_dim : str
        Name of the ensemble dimension of the output.
    chunks : OutputChunks
        Chunking of the lazily decoded fields.
    chunk : int
        State elements per batch of LETKF local analyses (bounds memory at about
        ``chunk * K * n_obs`` values).

    Examples
    --------
    >>> FullStateConfig(LETKFConfig(inflation=1.1, localization_radius=200.0)).name
    'LETKF'
    >>> FullStateConfig(FourDEnVarConfig()).tau
    5
    """

    method: LETKFConfig | ScaledEnSFConfig | FourDEnVarConfig = field(default_factory=LETKFConfig)
    members: int = 40
    window: int | None = None
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float64"
    device: str = "cpu"
    outside: Literal["error", "drop"] = "error"
    member_dim: str = "member"
    chunks: OutputChunks = field(default_factory=OutputChunks)
    chunk: int = 1024

    def __post_init__(self) -> None:
        if not isinstance(self.method, LETKFConfig | ScaledEnSFConfig | FourDEnVarConfig):
            raise ConfigError(
                f"FullStateConfig.method={self.method!r}: expected LETKFConfig, ScaledEnSFConfig "
                "or FourDEnVarConfig"
            )
        for name, low, what in (("members", 2, self.name), ("chunk", 1, "chunk")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"FullStateConfig.{name}={value!r}: {what} needs an integer >= {low}"
                )
        w = self.window
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ConfigError(f"FullStateConfig.window={w!r}: expected None or an integer >= 1")
        if w not in (None, 1) and not isinstance(self.method, FourDEnVarConfig):
            raise ConfigError(
                f"FullStateConfig.window={w}: {self.name} analyses one observation time at a "
                "time; windows are for FourDEnVarConfig"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"FullStateConfig.seed={self.seed!r}: expected an int")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(
                f"FullStateConfig.dtype={self.dtype!r}: expected 'float32' or 'float64'"
            )
        if self.outside not in ("error", "drop"):
            raise ConfigError(
                f"FullStateConfig.outside={self.outside!r}: expected 'error' or 'drop'"
            )

    @property
    def name(self) -> str:
        """``"ETKF"``, ``"LETKF"``, ``"EnSF"`` or ``"4DEnVar"``."""
        if isinstance(self.method, LETKFConfig):
            return "ETKF" if self.method.localization_radius is None else "LETKF"
        return "EnSF" if isinstance(self.method, ScaledEnSFConfig) else "4DEnVar"

    @property
    def tau(self) -> int:
        """Observation times per analysis (``window``, or its default for the method)."""
        if self.window is not None:
            return self.window
        return 5 if isinstance(self.method, FourDEnVarConfig) else 1
