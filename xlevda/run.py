"""Options every assimilation method shares: :class:`RunOptions` and :class:`OutputChunks`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from xlevda.errors import ConfigError
from xlevda.quality_control import GrossErrorCheck
from xlevda.validate import is_int

__all__ = ["OutputChunks", "RunDefaults", "RunOptions", "check_device"]


_DTYPES = ("float32", "float64")
_DEVICES = ("cpu", "cuda", "mps", "xpu")


def check_device(device: object) -> None:
    """Raise :class:`~xlevda.errors.ConfigError` unless ``device`` is usable here.

    A string naming a torch device of a kind that holds data (``"cpu"``, ``"cuda"``,
    ``"cuda:<i>"``, ``"mps"``, ``"xpu"``) and is available on this machine.

    Examples
    --------
    >>> check_device("cpu")
    >>> check_device("meta")
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: RunOptions.device='meta': expected one of ('cpu', 'cuda', \
'mps', 'xpu') (with an optional ':<index>')
    """
    expected = f"expected one of {_DEVICES} (with an optional ':<index>')"
    if not isinstance(device, str):
        raise ConfigError(f"RunOptions.device={device!r}: {expected}")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"RunOptions.device={device!r}: {expected}") from None
    if parsed.type not in _DEVICES:
        raise ConfigError(f"RunOptions.device={device!r}: {expected}")
    if parsed.type == "cpu":
        return
    backend = torch.backends.mps if parsed.type == "mps" else getattr(torch, parsed.type)
    count = getattr(backend, "device_count", lambda: 1)() if backend.is_available() else 0
    if (parsed.index or 0) >= count:
        raise ConfigError(
            f"RunOptions.device={device!r}: not available on this machine ({count} "
            f"{parsed.type} device(s) usable by this torch build): expected 'cpu' or an "
            "available device"
        )


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
            if not is_int(value, 1):
                raise ConfigError(f"OutputChunks.{name}={value!r}: expected an integer >= 1")


@dataclass(frozen=True)
class RunDefaults:
    """A method's defaults for the :class:`RunOptions` left at ``None``.

    Attributes
    ----------
    members : int
        Ensemble size.
    dtype : {"float32", "float64"}
        Precision of the ensemble, the decoding and the output fields.
    """

    members: int = 100
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class RunOptions:
    """How to run any method: ensemble size, randomness, precision, device and output layout.

    Passed as ``run=`` to :func:`xlevda.assimilate`, separately from the method.  A field
    left at ``None`` takes the method's default (its ``run_defaults``): 100 members in
    float32 for LEVDA and LD-EnSF, 40 members in float64 (as simulators run) for the
    full-state methods (ETKF/LETKF, EnSF, 4DEnVar).

    Attributes
    ----------
    members : int, optional
        Ensemble size ``K`` (>= 2).  :func:`xlevda.assimilate` refuses, before
        allocating, an ensemble whose estimated memory (``K x K`` ensemble-space
        matrices and ``K`` predictions of the observations) exceeds the device's.
    seed : int
        Seed of every random draw (>= 0): prior parameters, inflation noise, perturbed
        members, EnSF noise, model-error draws.  Case ``c`` of a multi-case run uses
        ``seed + c``.
    dtype : {"float32", "float64"}, optional
        Precision of the ensemble, the decoding and the output fields (parameter
        estimates are always float64).
    device : str
        Torch device of the computation, available on this machine: ``"cpu"``,
        ``"cuda"`` or ``"cuda:<i>"``, ``"mps"``, ``"xpu"``.
    member_dim : str
        Name of the ensemble dimension of the output: a new name, not a dimension,
        coordinate or variable the output has otherwise (checked by
        :func:`xlevda.assimilate`).
    chunks : OutputChunks
        Chunking of the lazily decoded fields.
    outside : {"error", "drop"}
        Observations at positions outside the model's spatial domain: an error, or
        dropped with the count of dropped values in the output attribute
        ``n_observations_dropped``.  Times are not dropped: an observation time outside
        the target's time range or before the surrogate's first frame is an error;
        target (and so observation) times past the trained horizon: see ``past_horizon``.
    past_horizon : {"error", "forecast"}
        Target times past the surrogate's trained horizon (its last training frame),
        where the surrogate extrapolates: an error (default), or forecasts, warned about
        and counted in the output attribute ``n_target_times_past_horizon``.
        Simulators have no horizon.
    checkpoint : str or path-like, optional
        A directory where each window's analysis is saved as it completes; a rerun of
        the same call (same inputs, options and seed) continues from the first window
        not saved, with the same values as an uninterrupted run
        (:mod:`xlevda.checkpoint`).  ``None`` (default): nothing saved.
    quality_control : GrossErrorCheck, optional
        Reject, in each window before its analysis, the observations far from the
        background (:class:`~xlevda.quality_control.GrossErrorCheck`): they stay in the output,
        flagged, are counted (``n_observations_rejected``, ``window_n_obs_rejected``)
        and warned about.  ``None`` (default): every observation is used.  Not for
        LD-EnSF or OI (a :class:`~xlevda.errors.ConfigError`).
    progress : bool, optional
        A progress bar over the windows while :func:`xlevda.assimilate` cycles them:
        ``None`` (default) when interactive (standard error a terminal, or a Jupyter
        kernel), ``True`` always, ``False`` never (:func:`xlevda.progress.progress`).

    Examples
    --------
    >>> RunOptions(members=50).resolve(RunDefaults(members=100, dtype="float64")).dtype
    'float64'
    """

    members: int | None = None
    seed: int = 0
    dtype: Literal["float32", "float64"] | None = None
    device: str = "cpu"
    member_dim: str = "member"
    chunks: OutputChunks = field(default_factory=OutputChunks)
    outside: Literal["error", "drop"] = "error"
    past_horizon: Literal["error", "forecast"] = "error"
    checkpoint: str | os.PathLike[str] | None = None
    quality_control: GrossErrorCheck | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.members is not None and not is_int(self.members, 2):
            raise ConfigError(f"RunOptions.members={self.members!r}: expected an integer >= 2")
        if not is_int(self.seed, 0):
            raise ConfigError(f"RunOptions.seed={self.seed!r}: expected an integer >= 0")
        for name in ("members", "seed"):  # numpy integers as Python ints
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        if not isinstance(self.dtype, str | None) or self.dtype not in (None, *_DTYPES):
            raise ConfigError(f"RunOptions.dtype={self.dtype!r}: expected 'float32' or 'float64'")
        check_device(self.device)
        if not isinstance(self.member_dim, str) or not self.member_dim:
            raise ConfigError(
                f"RunOptions.member_dim={self.member_dim!r}: expected a non-empty name"
            )
        if not isinstance(self.chunks, OutputChunks):
            raise ConfigError(f"RunOptions.chunks={self.chunks!r}: expected OutputChunks")
        if self.outside not in ("error", "drop"):
            raise ConfigError(f"RunOptions.outside={self.outside!r}: expected 'error' or 'drop'")
        if self.past_horizon not in ("error", "forecast"):
            raise ConfigError(
                f"RunOptions.past_horizon={self.past_horizon!r}: expected 'error' or 'forecast'"
            )
        ckpt = self.checkpoint
        if ckpt is not None and (not isinstance(ckpt, str | os.PathLike) or not str(ckpt)):
            raise ConfigError(f"RunOptions.checkpoint={ckpt!r}: expected a directory path or None")
        if ckpt is not None and Path(ckpt).exists() and not Path(ckpt).is_dir():
            raise ConfigError(f"RunOptions.checkpoint={str(ckpt)!r}: exists and is not a directory")
        if not isinstance(self.quality_control, GrossErrorCheck | None):
            raise ConfigError(
                f"RunOptions.quality_control={self.quality_control!r}: expected "
                "GrossErrorCheck(threshold=...) or None"
            )
        if not isinstance(self.progress, bool | None):
            raise ConfigError(
                f"RunOptions.progress={self.progress!r}: expected True, False or None"
            )

    def resolve(self, defaults: RunDefaults) -> RunOptions:
        """These options with the fields left at ``None`` set from a method's ``defaults``."""
        return replace(
            self,
            members=defaults.members if self.members is None else self.members,
            dtype=defaults.dtype if self.dtype is None else self.dtype,
        )

    @property
    def torch_dtype(self) -> torch.dtype:
        """``dtype`` as a torch dtype (float32 while unresolved)."""
        return torch.float64 if self.dtype == "float64" else torch.float32
