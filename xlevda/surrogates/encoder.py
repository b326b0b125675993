"""LSTM observation encoder of LD-EnSF: observation histories -> latent ``(s_t, u_t)``.

Torch only.  The encoder reads the history of (normalized) observations at a
fixed observation network -- ``P`` points times ``C`` channels, flattened as
``p * C + c`` -- through an LSTM and maps its hidden state at every observation
time linearly to the surrogate's augmented latent state ``z_t = (s_t, u_t)``.
It is trained (:func:`~xlevda.surrogates.encoder_training.fit_encoder`) by mean
squared error against the surrogate's own latent rollout (forward Euler from
``s_{-1} = 0``) and the normalized parameters of each run.

An encoder only makes sense for the observation network and the surrogate it
was trained for: both are fingerprinted
(:class:`~xlevda.surrogates.observation_network.ObservationNetwork`,
:class:`~xlevda.surrogates.fingerprint.SurrogateFingerprint`), saved with the
weights, and checked by :meth:`ObservationEncoder.check`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Self

import torch
from torch import Tensor, nn

from xlevda.errors import (
    ConfigError,
    ObservationError,
    ShapeError,
    SurrogateFileError,
    XlevdaError,
)
from xlevda.surrogates.filecheck import check_state, declared_state
from xlevda.surrogates.fileformat import ENCODER_FORMAT, read_file, write_file
from xlevda.surrogates.fingerprint import SurrogateFingerprint
from xlevda.surrogates.history import EncoderHistory
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.protocol import Surrogate
from xlevda.validate import check_int, check_real

__all__ = ["EncoderConfig", "ObservationEncoder"]


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
        check_int("EncoderConfig.hidden", self.hidden, 1)
        check_int("EncoderConfig.layers", self.layers, 1)
        check_int("EncoderConfig.epochs", self.epochs, 1)
        check_int("EncoderConfig.batch_size", self.batch_size, 1)
        check_real("EncoderConfig.lr", self.lr, 0.0, low_open=True)
        check_real("EncoderConfig.lr_min_factor", self.lr_min_factor, 0.0, 1.0)
        if self.grad_clip is not None:
            check_real("EncoderConfig.grad_clip", self.grad_clip, 0.0, low_open=True)
        check_real("EncoderConfig.noise_ratio", self.noise_ratio, 0.0)
        check_real(
            "EncoderConfig.val_fraction", self.val_fraction, 0.0, 1.0, low_open=True, high_open=True
        )
        check_int("EncoderConfig.seed", self.seed, 0)


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
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> model = LDNetModel(LDNetConfig(latent_dim=3, decoder=MLPDecoderConfig()), schema)
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
        check_int("n_obs", n_obs, 1)
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
        (``"xlevda-encoder"``), ``format_version``, ``xlevda_version``, ``config``, ``network``,
        ``fingerprint``, ``dtype``, ``state_dict`` (CPU tensors, normalization and
        ``error_std`` included), ``history`` and ``sha256`` (the checksum of all the
        rest, verified by :meth:`load`).  The file appears under ``path`` only once
        completely written.
        """
        entries = {
            "config": asdict(self.config),
            "network": self.network.to_dict(),
            "fingerprint": self.fingerprint.to_dict(),
            "dtype": str(self.in_mean.dtype).removeprefix("torch."),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "history": None if self.history is None else self.history.to_dict(),
        }
        write_file(path, ENCODER_FORMAT, entries)

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
            The file is not an encoder file (format, version, keys, checksum, weights
            whose shapes differ from those its config declares -- checked before the
            encoder is allocated -- or are not finite), or ``surrogate`` is not the
            training surrogate.
        ObservationError
            ``network`` is not the training network.
        """
        where = repr(os.fspath(path))
        required = ("config", "network", "fingerprint", "dtype", "state_dict")
        payload = read_file(path, ENCODER_FORMAT, required=required)
        parts = _parts(where, payload)
        declared = declared_state(where, lambda: cls(*parts))
        state = check_state(where, payload["state_dict"], declared, free_rows=("error_std",))
        try:
            encoder = cls(*parts, dtype=getattr(torch, payload["dtype"]))
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


def _parts(
    where: str, payload: dict
) -> tuple[EncoderConfig, ObservationNetwork, SurrogateFingerprint]:
    """The config, network and surrogate fingerprint of a file's payload, checked."""
    dtype = getattr(torch, str(payload["dtype"]), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SurrogateFileError(f"{where} has an invalid dtype {payload['dtype']!r}")
    try:
        parts = (
            EncoderConfig(**payload["config"]),
            ObservationNetwork(**payload["network"]),
            SurrogateFingerprint(**payload["fingerprint"]),
        )
        fingerprint = parts[2]
        check_int("fingerprint.latent_dim", fingerprint.latent_dim, 1)
        check_int("fingerprint.param_dim", fingerprint.param_dim, 1)
        check_real("fingerprint.dt", fingerprint.dt, 0.0, low_open=True)
        probe = torch.tensor(fingerprint.probe, dtype=torch.float64)
        if probe.dim() != 3 or probe.shape[-1] != fingerprint.latent_dim:
            raise ShapeError(f"fingerprint.probe has shape {tuple(probe.shape)}")
        if not bool(torch.isfinite(probe).all()):
            raise ConfigError("fingerprint.probe holds NaN or infinite values")
    except (XlevdaError, KeyError, TypeError, AttributeError, RuntimeError, ValueError) as err:
        raise SurrogateFileError(
            f"{where} holds an invalid encoder: {type(err).__name__}: {err}"
        ) from None
    return parts
