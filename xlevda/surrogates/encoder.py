"""LSTM observation encoder of LD-EnSF: observation histories -> latent ``(s_t, u_t)``.

Torch only.  The encoder reads the history of (normalized) observations at a
fixed observation network -- ``P`` points times ``C`` channels, flattened as
``p * C + c`` -- through an LSTM and maps its hidden state at every observation
time linearly to the surrogate's augmented latent state ``z_t = (s_t, u_t)``.
It is trained by mean squared error against the surrogate's own latent rollout
(forward Euler from ``s_{-1} = 0``) and the normalized parameters of each run.

An encoder only makes sense for the observation network and the surrogate it
was trained for: both are fingerprinted (:class:`ObservationNetwork`,
:class:`SurrogateFingerprint`), saved with the weights, and checked by
:meth:`ObservationEncoder.check`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from xlevda.core.dynamics import euler_rollout
from xlevda.core.prior import prior_params
from xlevda.errors import (
    ConfigError,
    ObservationError,
    ShapeError,
    SurrogateFileError,
    VariableError,
)
from xlevda.surrogates.config import _check_float, _check_int
from xlevda.surrogates.protocol import Surrogate
from xlevda.surrogates.schema import SurrogateSchema

__all__ = [
    "ENCODER_FILE_FORMAT",
    "ENCODER_FILE_FORMAT_VERSION",
    "EncoderConfig",
    "EncoderHistory",
    "ObservationEncoder",
    "ObservationNetwork",
    "SurrogateFingerprint",
    "fit_encoder",
    "latent_targets",
    "surrogate_histories",
]

ENCODER_FILE_FORMAT = "xlevda-encoder"
"""Format identifier stored in every saved encoder."""

ENCODER_FILE_FORMAT_VERSION = 1
"""Newest encoder file format version this xlevda writes and reads."""

_POINT_ATOL = 1e-6
"""Normalized coordinates closer than this are the same observation point."""

_PROBE_PARAMS = (-0.5, 0.0, 0.5)
"""Normalized parameter values (all components) of the surrogate fingerprint probe."""

_PROBE_FRAMES = 4
"""Frames of each probe rollout."""


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and training options of :class:`ObservationEncoder`.

    Attributes
    ----------
    hidden : int
        LSTM hidden size (>= 1); the paper uses 128-512.
    layers : int
        Stacked LSTM layers (>= 1); the paper uses 1.
    epochs : int
        Passes over the training runs (>= 1).
    batch_size : int
        Runs per Adam step (>= 1).
    lr : float
        Initial Adam learning rate (> 0), annealed by a cosine to ``lr * lr_min_factor``.
    lr_min_factor : float
        Final learning rate relative to ``lr``, in [0, 1].
    grad_clip : float or None
        Maximum global gradient norm (> 0); ``None`` disables clipping.
    noise_ratio : float
        Training observation noise (>= 0): fresh Gaussian noise every epoch with,
        per channel, standard deviation ``noise_ratio`` times that channel's standard
        deviation over the training histories (the convention of
        :func:`xlevda.systems.observe.observe`).  Validation inputs get the same
        noise (drawn once), so the error estimate includes it.
    val_fraction : float
        Fraction of the runs held out for validation when no validation runs are
        given, in (0, 1).
    seed : int
        Seed of the weights, the validation split, shuffling and noise (>= 0).

    Examples
    --------
    >>> EncoderConfig(hidden=32, epochs=10).layers
    1
    """

    hidden: int = 128
    layers: int = 1
    epochs: int = 500
    batch_size: int = 32
    lr: float = 3e-3
    lr_min_factor: float = 0.01
    grad_clip: float | None = 1.0
    noise_ratio: float = 0.1
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("EncoderConfig.hidden", self.hidden, 1)
        _check_int("EncoderConfig.layers", self.layers, 1)
        _check_int("EncoderConfig.epochs", self.epochs, 1)
        _check_int("EncoderConfig.batch_size", self.batch_size, 1)
        _check_float("EncoderConfig.lr", self.lr, 0.0, lo_open=True)
        _check_float("EncoderConfig.lr_min_factor", self.lr_min_factor, 0.0, 1.0)
        if self.grad_clip is not None:
            _check_float("EncoderConfig.grad_clip", self.grad_clip, 0.0, lo_open=True)
        _check_float("EncoderConfig.noise_ratio", self.noise_ratio, 0.0)
        _check_float(
            "EncoderConfig.val_fraction", self.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True
        )
        _check_int("EncoderConfig.seed", self.seed, 0)


def _as_points(points: object) -> tuple[tuple[float, ...], ...]:
    try:
        array = np.asarray(
            points.detach().cpu() if isinstance(points, Tensor) else points, dtype=float
        )
    except (TypeError, ValueError):
        raise ObservationError(
            f"ObservationNetwork points must be numbers of shape (P, n_coords), got {points!r}"
        ) from None
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ObservationError(
            f"ObservationNetwork points must have shape (P, n_coords) with P, n_coords >= 1, "
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ObservationError("ObservationNetwork points hold NaN or infinite coordinates")
    return tuple(tuple(float(v) for v in row) for row in array)


@dataclass(frozen=True)
class ObservationNetwork:
    """Fixed observation points, observed channels and observation frames.

    Observation ``j`` is taken at surrogate frame ``first_frame + j * frame_stride``
    (frame ``k`` is the latent state after ``k + 1`` Euler steps from
    ``s_{-1} = 0``), at every point and channel.

    Attributes
    ----------
    points : tuple of tuple of float, shape (P, n_coords)
        Normalized coordinates (as the decoder sees them); any array-like is
        accepted and stored as tuples.
    channels : tuple of int
        Observed decoder channels, distinct, in the order of the flattened input.
    first_frame : int
        Frame of the first observation (>= 0).
    frame_stride : int
        Frames between observations (>= 1).

    Examples
    --------
    >>> net = ObservationNetwork(points=[[0.0, 0.5], [0.5, 0.0]], channels=(0,))
    >>> net.n_points, net.n_features, net.frames(3).tolist()
    (2, 2, [0, 1, 2])
    """

    points: tuple[tuple[float, ...], ...]
    channels: tuple[int, ...]
    first_frame: int = 0
    frame_stride: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _as_points(self.points))
        channels = tuple(self.channels) if isinstance(self.channels, list | tuple) else None
        if (
            not channels
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in channels)
            or len(set(channels)) != len(channels)
        ):
            raise ObservationError(
                "ObservationNetwork channels must be a non-empty tuple of distinct channel "
                f"indices >= 0, got {self.channels!r}"
            )
        object.__setattr__(self, "channels", channels)
        _check_int("ObservationNetwork.first_frame", self.first_frame, 0)
        _check_int("ObservationNetwork.frame_stride", self.frame_stride, 1)

    @property
    def n_points(self) -> int:
        """``P``."""
        return len(self.points)

    @property
    def n_coords(self) -> int:
        """Coordinates per point."""
        return len(self.points[0])

    @property
    def n_channels(self) -> int:
        """``C``, the number of observed channels."""
        return len(self.channels)

    @property
    def n_features(self) -> int:
        """``P * C``, the length of one flattened observation vector."""
        return self.n_points * self.n_channels

    def points_tensor(
        self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """The points as a tensor of shape (P, n_coords)."""
        return torch.tensor(self.points, dtype=dtype or torch.get_default_dtype(), device=device)

    def frames(self, n_obs: int) -> Tensor:
        """Surrogate frames of the first ``n_obs`` observations, a LongTensor (n_obs,)."""
        return self.first_frame + self.frame_stride * torch.arange(n_obs)

    def difference(self, other: ObservationNetwork) -> str | None:
        """What differs from ``other`` (in words), or ``None`` if they are the same network.

        Points are the same when their normalized coordinates agree within ``1e-6``.

        Examples
        --------
        >>> a = ObservationNetwork(points=[[0.0]], channels=(0,))
        >>> a.difference(ObservationNetwork(points=[[0.0]], channels=(1,)))
        'channels (0,) != (1,)'
        """
        if self.channels != other.channels:
            return f"channels {self.channels} != {other.channels}"
        if (self.first_frame, self.frame_stride) != (other.first_frame, other.frame_stride):
            return (
                f"observation frames (first_frame, frame_stride) "
                f"{(self.first_frame, self.frame_stride)} != "
                f"{(other.first_frame, other.frame_stride)}"
            )
        if (self.n_points, self.n_coords) != (other.n_points, other.n_coords):
            return (
                f"points of shape {(self.n_points, self.n_coords)} != "
                f"{(other.n_points, other.n_coords)}"
            )
        gap = np.abs(np.asarray(self.points) - np.asarray(other.points)).max(axis=1)
        if (gap > _POINT_ATOL).any():
            p = int(np.argmax(gap > _POINT_ATOL))
            return f"point {p} at {self.points[p]} != {other.points[p]}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)


def _probe(surrogate: Surrogate) -> Tensor:
    """Latent rollouts at fixed parameters, float64 (n_probe, _PROBE_FRAMES, d_s)."""
    like = torch.as_tensor(surrogate.dt)
    u = torch.tensor(_PROBE_PARAMS, dtype=like.dtype, device=like.device)[:, None]
    u = u.expand(len(_PROBE_PARAMS), surrogate.param_dim)
    with torch.no_grad():
        return _rollout(surrogate, u, _PROBE_FRAMES).to(device="cpu", dtype=torch.float64)


@dataclass(frozen=True)
class SurrogateFingerprint:
    """What identifies the surrogate an encoder was trained for.

    Attributes
    ----------
    latent_dim, param_dim : int
    dt : float
        Latent Euler step.
    schema : dict
        ``SurrogateSchema.to_dict()`` (compared without its free-form ``attrs``).
    probe : tuple
        Latent rollouts of :data:`_PROBE_FRAMES` frames at the normalized parameters
        :data:`_PROBE_PARAMS` (all components), nested tuples of shape
        (3, 4, latent_dim): they tell a retrained surrogate from the original even
        when the schemas agree.

    Examples
    --------
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> a = SurrogateFingerprint.of(LDNetModel(LDNetConfig(latent_dim=3, seed=0), schema))
    >>> b = SurrogateFingerprint.of(LDNetModel(LDNetConfig(latent_dim=3, seed=1), schema))
    >>> a.difference(a) is None, b.difference(a).startswith("latent trajectories")
    (True, True)
    """

    latent_dim: int
    param_dim: int
    dt: float
    schema: dict[str, Any]
    probe: tuple = field(repr=False)

    @classmethod
    def of(cls, surrogate: Surrogate) -> SurrogateFingerprint:
        """Fingerprint of ``surrogate`` (its schema must be a :class:`SurrogateSchema`)."""
        if not isinstance(surrogate.schema, SurrogateSchema):
            raise ConfigError(
                f"surrogate.schema must be a SurrogateSchema, got {type(surrogate.schema).__name__}"
            )
        return cls(
            latent_dim=int(surrogate.latent_dim),
            param_dim=int(surrogate.param_dim),
            dt=float(torch.as_tensor(surrogate.dt).detach()),
            schema=surrogate.schema.to_dict(),
            probe=tuple(_probe(surrogate).tolist()),
        )

    def difference(self, other: SurrogateFingerprint) -> str | None:
        """What differs from ``other`` (in words), or ``None`` if it is the same surrogate.

        ``dt`` and the probe rollouts are compared to a relative tolerance of
        ``1e-4`` (so the same surrogate in float32 and float64 matches).
        """
        for name in ("latent_dim", "param_dim"):
            if getattr(self, name) != getattr(other, name):
                return f"{name} {getattr(self, name)} != {getattr(other, name)}"
        if not math.isclose(self.dt, other.dt, rel_tol=1e-4):
            return f"latent step dt {self.dt} != {other.dt}"
        keys = sorted((set(self.schema) | set(other.schema)) - {"attrs"})
        for key in keys:
            if self.schema.get(key) != other.schema.get(key):
                return f"schema {key!r} {self.schema.get(key)!r} != {other.schema.get(key)!r}"
        mine, theirs = torch.tensor(self.probe), torch.tensor(other.probe)
        atol = 1e-4 * max(1.0, float(mine.abs().max()))
        if not torch.allclose(mine, theirs, rtol=1e-4, atol=atol):
            gap = float((mine - theirs).abs().max())
            return (
                "latent trajectories at the probe parameters differ by up to "
                f"{gap:.3g} (another or retrained surrogate)"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)


def _rollout(surrogate: Surrogate, u: Tensor, n_frames: int) -> Tensor:
    """Frames ``0..n_frames-1`` from ``s_{-1} = 0``: ``u`` (..., d_u) -> (..., n_frames, d_s)."""
    s_start = u.new_zeros((*u.shape[:-1], surrogate.latent_dim))
    s, _ = euler_rollout(surrogate.vector_field, s_start, u, surrogate.dt, n_frames)
    return s[..., 1:, :]


def latent_targets(
    surrogate: Surrogate, network: ObservationNetwork, params: Tensor, n_obs: int
) -> Tensor:
    """The surrogate's augmented latent states at the observation frames.

    Parameters
    ----------
    surrogate : Surrogate
    network : ObservationNetwork
        Gives the observation frames.
    params : Tensor, shape (R, d_u)
        Normalized parameters of each run.
    n_obs : int
        Observations per run (>= 1).

    Returns
    -------
    Tensor, shape (R, n_obs, d_s + d_u)
        ``(s_k, u)`` at frames ``k = network.frames(n_obs)``, without gradients.

    Examples
    --------
    >>> import torch
    >>> class Drift:  # s' = u, so frame k is (k + 1) dt u
    ...     latent_dim, param_dim, dt = 1, 1, torch.tensor(0.5)
    ...     def vector_field(self, s, u): return u
    >>> net = ObservationNetwork(points=[[0.0]], channels=(0,), first_frame=1, frame_stride=2)
    >>> latent_targets(Drift(), net, torch.tensor([[2.0]]), 2)[0].tolist()
    [[2.0, 2.0], [4.0, 2.0]]
    """
    _check_params(params, surrogate.param_dim, "params")
    _check_int("n_obs", n_obs, 1)
    frames = network.frames(n_obs).to(params.device)
    with torch.no_grad():
        s = _rollout(surrogate, params, int(frames[-1]) + 1).index_select(-2, frames)
    return torch.cat([s, params[:, None, :].expand(-1, n_obs, -1)], -1)


def surrogate_histories(
    surrogate: Surrogate,
    network: ObservationNetwork,
    n_runs: int,
    n_obs: int,
    *,
    seed: int = 0,
    prior_range: tuple[tuple[float, float], ...] | None = None,
) -> tuple[Tensor, Tensor]:
    """Clean observation histories simulated by the surrogate alone.

    Parameters are drawn uniformly from ``prior_range`` (physical units, default
    the schema's training range), the latent state is rolled out from
    ``s_{-1} = 0`` and decoded at the network's points and channels.  Noise is
    added during training (:attr:`EncoderConfig.noise_ratio`).

    Parameters
    ----------
    surrogate : Surrogate
        Its schema must be a :class:`SurrogateSchema`; the histories are in its
        dtype and on its device (those of ``surrogate.dt``).
    network : ObservationNetwork
    n_runs, n_obs : int
        Runs and observations per run (>= 1).
    seed : int
        Seed of the parameter draws.
    prior_range : tuple of (lo, hi), optional
        See :func:`~xlevda.core.prior.prior_params`.

    Returns
    -------
    histories : Tensor, shape (n_runs, n_obs, P * C)
        Normalized observations, flattened as ``p * C + c``.
    params : Tensor, shape (n_runs, d_u)
        Normalized parameters.
    """
    _check_int("n_runs", n_runs, 1)
    _check_int("seed", seed, 0)
    _check_network_fits(network, surrogate)
    like = torch.as_tensor(surrogate.dt)
    gen = torch.Generator().manual_seed(seed)
    params = prior_params(
        surrogate.schema, n_runs, gen, prior_range, dtype=like.dtype, device=like.device
    )
    s = latent_targets(surrogate, network, params, n_obs)[..., : surrogate.latent_dim]
    points = network.points_tensor(dtype=like.dtype, device=like.device)
    channels = torch.tensor(network.channels, device=like.device)
    with torch.no_grad():
        values = surrogate.decode(s, points).index_select(-1, channels)  # (R, T, P, C)
    return values.flatten(-2), params


@dataclass
class EncoderHistory:
    """Per-epoch record of encoder training (losses in standardized output units).

    Attributes
    ----------
    train_loss, val_loss : list of float
        Mean squared error per epoch on the (noisy) training and validation inputs.
    best_epoch : int or None
        Epoch of the restored weights (lowest validation loss).
    seconds : float
        Wall time of training.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain containers (round-trips through the constructor)."""
        return asdict(self)


class ObservationEncoder(nn.Module):
    """LSTM over observation histories, then a linear map to ``z_t = (s_t, u_t)``.

    Inputs are standardized per feature and outputs de-standardized per
    component with statistics of the training data (buffers ``in_mean``,
    ``in_std``, ``out_mean``, ``out_std``).  The LSTM is causal: the output at
    observation ``t`` depends on observations ``0..t`` only.

    Parameters
    ----------
    config : EncoderConfig
    network : ObservationNetwork
    fingerprint : SurrogateFingerprint
    device, dtype : optional
        Of the weights (default CPU, float32).

    Attributes
    ----------
    error_std : Tensor, shape (T_val, d_s + d_u)
        Validation root mean squared error per observation index and component
        (latent units): the pseudo-observation error of LD-EnSF.  Zeros until trained.
    history : EncoderHistory or None

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> model = LDNetModel(LDNetConfig(latent_dim=3), schema)
    >>> net = ObservationNetwork(points=[[0.0], [0.5]], channels=(0,))
    >>> enc = ObservationEncoder(EncoderConfig(hidden=8), net, SurrogateFingerprint.of(model))
    >>> enc(torch.zeros(2, 6, 2)).shape
    torch.Size([2, 6, 4])
    """

    def __init__(
        self,
        config: EncoderConfig,
        network: ObservationNetwork,
        fingerprint: SurrogateFingerprint,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value, kind in (
            ("config", config, EncoderConfig),
            ("network", network, ObservationNetwork),
            ("fingerprint", fingerprint, SurrogateFingerprint),
        ):
            if not isinstance(value, kind):
                raise ConfigError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")
        self.config, self.network, self.fingerprint = config, network, fingerprint
        self.history: EncoderHistory | None = None
        n_in, n_out = network.n_features, fingerprint.latent_dim + fingerprint.param_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.lstm = nn.LSTM(n_in, config.hidden, config.layers, batch_first=True)
            self.head = nn.Linear(config.hidden, n_out)
        for name, size in (("in_mean", n_in), ("out_mean", n_out)):
            self.register_buffer(name, torch.zeros(size))
        for name, size in (("in_std", n_in), ("out_std", n_out)):
            self.register_buffer(name, torch.ones(size))
        self.register_buffer("error_std", torch.zeros(1, n_out))
        self.to(device=device, dtype=dtype)

    @property
    def latent_dim(self) -> int:
        """``d_s`` of the surrogate."""
        return self.fingerprint.latent_dim

    @property
    def param_dim(self) -> int:
        """``d_u`` of the surrogate."""
        return self.fingerprint.param_dim

    def forward(self, histories: Tensor) -> Tensor:
        """Encode observation histories.

        Parameters
        ----------
        histories : Tensor, shape (..., T, P * C)
            Normalized observations at the network, flattened as ``p * C + c``.

        Returns
        -------
        Tensor, shape (..., T, d_s + d_u)
            ``(s_t, u_t)`` in latent units; entry ``t`` sees observations ``0..t``.
        """
        n_in = self.network.n_features
        if histories.dim() < 2 or histories.shape[-1] != n_in or histories.shape[-2] < 1:
            raise ShapeError(
                f"histories must have shape (..., T, P * C = {self.network.n_points} * "
                f"{self.network.n_channels} = {n_in}) with T >= 1, got {tuple(histories.shape)}"
            )
        if not torch.isfinite(histories).all():
            raise ObservationError(
                "histories hold NaN or infinite values; the encoder needs every point and "
                "channel of its network at every observation time"
            )
        lead = histories.shape[:-2]
        x = (histories.reshape(-1, *histories.shape[-2:]) - self.in_mean) / self.in_std
        hidden, _ = self.lstm(x.to(self.in_mean.dtype))
        out = self.head(hidden) * self.out_std + self.out_mean
        return out.reshape(*lead, *out.shape[-2:])

    def observation_std(self, n_obs: int) -> Tensor:
        """Pseudo-observation error per observation and component, (n_obs, d_s + d_u).

        Row ``t`` is :attr:`error_std` row ``t``; observations beyond the validated
        length use its last row.
        """
        _check_int("n_obs", n_obs, 1)
        index = torch.arange(n_obs, device=self.error_std.device).clamp(
            max=self.error_std.shape[0] - 1
        )
        return self.error_std.index_select(0, index)

    def check(self, surrogate: Surrogate, network: ObservationNetwork | None = None) -> None:
        """Raise if ``surrogate`` or ``network`` is not the one the encoder was trained for.

        Raises
        ------
        SurrogateFileError
            ``surrogate`` differs from the training surrogate (the message names what).
        ObservationError
            ``network`` differs from the training network (the message names what).
        """
        diff = self.fingerprint.difference(SurrogateFingerprint.of(surrogate))
        if diff is not None:
            raise SurrogateFileError(
                f"the encoder was trained for another surrogate: {diff} (encoder vs surrogate)"
            )
        if network is not None:
            if not isinstance(network, ObservationNetwork):
                raise ConfigError(
                    f"network must be an ObservationNetwork, got {type(network).__name__}"
                )
            diff = self.network.difference(network)
            if diff is not None:
                raise ObservationError(
                    "the encoder was trained for another observation network: "
                    f"{diff} (encoder vs given)"
                )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the encoder, its network and surrogate fingerprint to one file.

        The file (``torch.save`` of plain containers) holds ``format``
        (``"xlevda-encoder"``), ``format_version``, ``config``, ``network``,
        ``fingerprint``, ``dtype``, ``state_dict`` (CPU tensors, normalization and
        ``error_std`` included) and ``history``.
        """
        payload = {
            "format": ENCODER_FILE_FORMAT,
            "format_version": ENCODER_FILE_FORMAT_VERSION,
            "config": asdict(self.config),
            "network": self.network.to_dict(),
            "fingerprint": self.fingerprint.to_dict(),
            "dtype": str(self.in_mean.dtype).removeprefix("torch."),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "history": None if self.history is None else self.history.to_dict(),
        }
        torch.save(payload, path)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        surrogate: Surrogate | None = None,
        network: ObservationNetwork | None = None,
        *,
        map_location: torch.device | str | None = None,
    ) -> Self:
        """Read an encoder written by :meth:`save`, optionally checking it (:meth:`check`).

        Raises
        ------
        SurrogateFileError
            The file is not an encoder file (format, version, keys, weights), or
            ``surrogate`` is not the training surrogate.
        ObservationError
            ``network`` is not the training network.
        """
        where = repr(os.fspath(path))
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise SurrogateFileError(
                f"{where} is not a readable xlevda encoder file: {type(err).__name__}: {err}"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != ENCODER_FILE_FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise SurrogateFileError(
                f"{where} has format {found!r}, expected {ENCODER_FILE_FORMAT!r}"
            )
        version = payload.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= ENCODER_FILE_FORMAT_VERSION:
            raise SurrogateFileError(
                f"{where} has encoder format version {version!r}, this xlevda reads "
                f"1..{ENCODER_FILE_FORMAT_VERSION}"
            )
        try:
            encoder = cls(
                EncoderConfig(**payload["config"]),
                ObservationNetwork(**payload["network"]),
                SurrogateFingerprint(**payload["fingerprint"]),
                dtype=getattr(torch, payload["dtype"]),
            )
            state = payload["state_dict"]
            encoder.error_std = torch.empty_like(state["error_std"], dtype=encoder.in_mean.dtype)
            encoder.load_state_dict(state)
        except (KeyError, TypeError, AttributeError, RuntimeError, ValueError) as err:
            raise SurrogateFileError(
                f"{where} holds an invalid encoder: {type(err).__name__}: {err}"
            ) from None
        if payload.get("history") is not None:
            encoder.history = EncoderHistory(**payload["history"])
        encoder.to(device=torch.device("cpu" if map_location is None else map_location))
        if surrogate is not None:
            encoder.check(surrogate, network)
        elif network is not None:
            raise ConfigError("network is checked against the encoder only with a surrogate")
        return encoder


def _check_params(params: Tensor, d_u: int, name: str) -> None:
    if not isinstance(params, Tensor) or params.dim() != 2 or params.shape[1] != d_u:
        shape = tuple(params.shape) if isinstance(params, Tensor) else type(params).__name__
        raise ShapeError(f"{name} must be a tensor of shape (R, d_u={d_u}), got {shape}")
    if not torch.isfinite(params).all():
        raise VariableError(f"{name} hold NaN or infinite values")


def _check_network_fits(network: ObservationNetwork, surrogate: Surrogate) -> None:
    if not isinstance(network, ObservationNetwork):
        raise ConfigError(f"network must be an ObservationNetwork, got {type(network).__name__}")
    schema = surrogate.schema
    if network.n_coords != schema.n_coords:
        raise ObservationError(
            f"network points have {network.n_coords} coordinates, the surrogate decodes "
            f"{schema.n_coords} ({tuple(schema.coords)})"
        )
    if max(network.channels) >= schema.n_channels:
        raise ObservationError(
            f"network channels {network.channels} include an index >= the surrogate's "
            f"{schema.n_channels} channels ({tuple(schema.variables)})"
        )


def _check_histories(
    histories: Tensor, params: Tensor, network: ObservationNetwork, d_u: int, name: str
) -> None:
    _check_params(params, d_u, f"{name} params")
    if (
        not isinstance(histories, Tensor)
        or histories.dim() != 3
        or histories.shape[0] != params.shape[0]
        or histories.shape[2] != network.n_features
        or histories.shape[1] < 1
    ):
        shape = tuple(histories.shape) if isinstance(histories, Tensor) else type(histories)
        raise ShapeError(
            f"{name} histories must have shape (R={params.shape[0]}, T >= 1, P * C = "
            f"{network.n_features}), got {shape}"
        )
    if not torch.isfinite(histories).all():
        raise ObservationError(f"{name} histories hold NaN or infinite values")


def _standardizer(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and std over all but the last dimension (a zero std becomes 1)."""
    flat = x.reshape(-1, x.shape[-1])
    std = flat.std(0) if flat.shape[0] > 1 else torch.ones_like(flat[0])
    return flat.mean(0), torch.where(std > 0, std, torch.ones_like(std))


def fit_encoder(
    surrogate: Surrogate,
    network: ObservationNetwork,
    histories: Tensor,
    params: Tensor,
    config: EncoderConfig | None = None,
    *,
    val_histories: Tensor | None = None,
    val_params: Tensor | None = None,
    progress: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ObservationEncoder:
    """Train an :class:`ObservationEncoder` on observation histories of runs.

    The targets are the surrogate's own latent states at the observation frames
    (:func:`latent_targets`) and the normalized parameters; the loss is the mean
    squared error in per-component standardized units.  Inputs get fresh noise
    every epoch (:attr:`EncoderConfig.noise_ratio`).  The weights of the epoch
    with the lowest validation loss are kept, and the validation RMSE per
    observation index and component becomes :attr:`ObservationEncoder.error_std`
    (at least ``sqrt(eps)`` times the component's scale, ``max(std, |mean|)``, so that a
    component predicted exactly, e.g. a constant one, is not taken as exact).

    Parameters
    ----------
    surrogate : Surrogate
        Its schema must be a :class:`SurrogateSchema`.
    network : ObservationNetwork
        Where (and at which frames) the histories were observed.
    histories : Tensor, shape (R, T, P * C)
        Normalized observations of each run, e.g. from :func:`surrogate_histories`
        or from simulations observed at the network.
    params : Tensor, shape (R, d_u)
        Normalized parameters of each run.
    config : EncoderConfig, optional
    val_histories, val_params : Tensor, optional
        Validation runs (same layout); by default ``config.val_fraction`` of the
        runs are held out.
    progress : bool
        Show a progress bar.
    device, dtype : optional
        Of the encoder (default CPU, float32).

    Returns
    -------
    ObservationEncoder
        With ``error_std`` and ``history`` set.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> model = LDNetModel(LDNetConfig(latent_dim=2), schema)
    >>> net = ObservationNetwork(points=[[0.0], [0.5]], channels=(0,))
    >>> y, u = surrogate_histories(model, net, n_runs=8, n_obs=5)
    >>> enc = fit_encoder(model, net, y, u, EncoderConfig(hidden=8, epochs=2))
    >>> enc.error_std.shape
    torch.Size([5, 3])
    """
    config = EncoderConfig() if config is None else config
    if not isinstance(config, EncoderConfig):
        raise ConfigError(f"config must be an EncoderConfig, got {type(config).__name__}")
    _check_network_fits(network, surrogate)
    d_u = surrogate.param_dim
    _check_histories(histories, params, network, d_u, "training")
    gen = torch.Generator().manual_seed(config.seed)
    if val_histories is None and val_params is None:
        n_runs = histories.shape[0]
        n_val = max(1, round(config.val_fraction * n_runs))
        if n_runs - n_val < 1:
            raise ShapeError(
                f"need at least 2 training runs to hold out validation runs, got {n_runs}"
            )
        order = torch.randperm(n_runs, generator=gen).to(histories.device)
        val_histories, val_params = histories[order[:n_val]], params[order[:n_val]]
        histories, params = histories[order[n_val:]], params[order[n_val:]]
    elif val_histories is None or val_params is None:
        raise ConfigError("give both val_histories and val_params, or neither")
    _check_histories(val_histories, val_params, network, d_u, "validation")

    encoder = ObservationEncoder(
        config, network, SurrogateFingerprint.of(surrogate), device=device, dtype=dtype
    )
    like = encoder.in_mean

    def prepare(y: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        target = latent_targets(surrogate, network, u.to(torch.as_tensor(surrogate.dt)), y.shape[1])
        return y.to(like), target.to(like)

    x_train, z_train = prepare(histories, params)
    x_val, z_val = prepare(val_histories, val_params)
    encoder.in_mean, encoder.in_std = _standardizer(x_train)
    encoder.out_mean, encoder.out_std = _standardizer(z_train)
    channel_std = x_train.unflatten(-1, (network.n_points, network.n_channels))
    channel_std = channel_std.reshape(-1, network.n_channels).std(0)
    noise_std = (config.noise_ratio * channel_std).repeat(network.n_points)  # (P * C,)

    def noisy(x: Tensor) -> Tensor:
        draw = torch.randn(x.shape, generator=gen, dtype=like.dtype).to(like.device)
        return x + noise_std * draw

    x_val = noisy(x_val)

    def loss_of(x: Tensor, z: Tensor) -> Tensor:
        return ((encoder(x) - z) / encoder.out_std).square().mean()

    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    history = EncoderHistory()
    best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    best = math.inf
    start = time.perf_counter()
    n_train = x_train.shape[0]
    bar = tqdm(total=config.epochs, desc="encoder", unit="epoch", disable=not progress)
    for epoch in range(config.epochs):
        progress_frac = epoch / max(config.epochs - 1, 1)
        lo = config.lr * config.lr_min_factor
        for group in optimizer.param_groups:
            group["lr"] = lo + 0.5 * (config.lr - lo) * (1 + math.cos(math.pi * progress_frac))
        encoder.train()
        order = torch.randperm(n_train, generator=gen).to(like.device)
        total = 0.0
        for chunk in order.split(config.batch_size):
            loss = loss_of(noisy(x_train[chunk]), z_train[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(encoder.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(chunk)
        encoder.eval()
        with torch.no_grad():
            val = float(loss_of(x_val, z_val))
        history.train_loss.append(total / n_train)
        history.val_loss.append(val)
        if val < best:
            best, history.best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        bar.set_postfix({"train": f"{total / n_train:.3e}", "val": f"{val:.3e}"}, refresh=False)
        bar.update(1)
    bar.close()
    encoder.load_state_dict(best_state)
    with torch.no_grad():
        # a component predicted exactly (e.g. a latent clock that is 1 in every run) gets
        # the outputs' own resolution, not 0, which would make its pseudo-observation exact
        floor = torch.finfo(encoder.out_std.dtype).eps ** 0.5 * torch.maximum(
            encoder.out_std, encoder.out_mean.abs()
        )
        encoder.error_std = (encoder(x_val) - z_val).square().mean(0).sqrt().clamp_min(floor)
    history.seconds = time.perf_counter() - start
    encoder.history = history
    return encoder
