"""Typed configuration of an assimilation run."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from xlevda.core.levda import Inflation, MemberMode, Randomized, WarmStart
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.errors import ConfigError

__all__ = ["LEVDAConfig", "OutputChunks"]


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
        prior centres and data (the default), or the paper's warm starts of one
        shared cost.  Warm-start members converge to one minimum wherever the cost
        is convex, so their spread collapses and cycling then stops with an error
        asking for inflation; randomized members sample the posterior in the
        linear-Gaussian case (see ``tests/core``).
    optimizer : LBFGSConfig or GaussNewtonConfig
        The batched solver of the K member problems.
    seed : int
        Seed of the prior draws, the inflation noise and RML perturbations.
    dtype : {"float32", "float64"}
        Precision of the optimization.
    device : str
        Torch device of the optimization and decoding, e.g. ``"cpu"`` or ``"cuda"``.
    outside : {"error", "drop"}
        Observations outside the surrogate's domain: an error, or dropped with the
        count reported in the output attributes.
    member_dim : str
        Name of the ensemble dimension of the output.
    chunks : OutputChunks
        Chunking of the lazily decoded fields.

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
    optimizer: LBFGSConfig | GaussNewtonConfig = field(default_factory=LBFGSConfig)
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    outside: Literal["error", "drop"] = "error"
    member_dim: str = "member"
    chunks: OutputChunks = field(default_factory=OutputChunks)

    def __post_init__(self) -> None:
        if isinstance(self.members, bool) or not isinstance(self.members, int):
            raise ConfigError(f"members={self.members!r}: expected an integer >= 2")
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

    def to_json(self) -> str:
        """The full configuration as JSON (stored in the output's attributes)."""

        def kind(obj: Any) -> dict[str, Any]:
            return {"type": type(obj).__name__, **asdict(obj)}

        data = asdict(self)
        data["mode"] = kind(self.mode)
        data["optimizer"] = kind(self.optimizer)
        return json.dumps(data, sort_keys=True, default=str)
