"""LDNet surrogate: latent Euler dynamics plus a coordinate-based decoder (paper 2.4).

Torch only.  :class:`LDNetModel` satisfies
:class:`~xlevda.surrogates.protocol.Surrogate` and saves to / loads from one
file that holds the weights, the config, the schema and the training history.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any, Self

import torch
from torch import Tensor, nn

from xlevda.core.dynamics import euler_rollout
from xlevda.core.misfit import weighted_misfit
from xlevda.errors import ConfigError, ShapeError, SurrogateFileError, XlevdaError
from xlevda.surrogates.config import LDNetConfig, config_from_dict, config_to_dict
from xlevda.surrogates.decoders import CosineDecoder, MLPDecoder, SeparableDecoder
from xlevda.surrogates.filecheck import check_state, declared_state, schema_from_dict
from xlevda.surrogates.fileformat import SURROGATE_FORMAT, half_state, read_file, write_file
from xlevda.surrogates.fitreport import FitReport
from xlevda.surrogates.history import TrainingHistory
from xlevda.surrogates.polynomial import PolynomialField
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.vector_fields import ImpulseLinearField, VectorFieldNet

__all__ = ["MODEL_KIND", "LDNetModel"]

MODEL_KIND = "ldnet"
"""Model kind stored by :meth:`LDNetModel.save`."""

_REQUIRED_KEYS = (
    "format",
    "format_version",
    "xlevda_version",
    "kind",
    "config",
    "schema",
    "dtype",
    "state_dict",
    "history",
    "metadata",
)


class LDNetModel(nn.Module):
    """Latent Dynamics Network: ``ds/dt = F(s, u)`` by forward Euler, fields ``D(s, xi)``.

    All tensors are in the normalized units of ``schema``.  The latent trajectory
    uses the shifted start ``s_{-1} = 0``: frame ``k`` is the state after ``k + 1``
    Euler steps, so frame 0 already depends on ``u``.  With
    ``config.initial_state`` (:class:`~xlevda.surrogates.config.LearnedInitialState`)
    the model holds a table ``initial_states`` (n_runs, d_s) of per-run learned
    initial states, and a trajectory starts at a given frame-0 state ``s0``
    instead (frame ``k`` after ``k`` steps).

    Parameters
    ----------
    config : LDNetConfig
        Architecture (and training options).
    schema : SurrogateSchema
        Variables, coordinates and parameters; gives ``param_dim``, the number of
        coordinates and channels.
    device, dtype : optional
        Where and in which precision to hold the weights (default CPU, float32).

    Attributes
    ----------
    latent_dim : int
        ``d_s``.
    param_dim : int
        ``d_u`` (number of schema parameters).
    schema : SurrogateSchema
    config : LDNetConfig
    history : TrainingHistory or None
        Set by :func:`~xlevda.surrogates.training.train`; saved with the model.
    metadata : dict
        Free-form JSON-serializable notes saved with the model.
    quality : FitReport or None
        The quality report of the fit (set by :meth:`xlevda.LDNet.fit`); saved with
        the model.  ``None`` for a model not fitted by it, or loaded from a file
        written before xlevda recorded one.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5, coords=("x", "y"))
    >>> model = LDNetModel(LDNetConfig(latent_dim=3, decoder=MLPDecoderConfig()), schema)
    >>> model(torch.zeros(2, 1), torch.zeros(7, 2), n_frames=5).shape
    torch.Size([2, 5, 7, 1])
    """

    def __init__(
        self,
        config: LDNetConfig,
        schema: SurrogateSchema,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(config, LDNetConfig):
            raise ConfigError(f"config must be an LDNetConfig, got {type(config).__name__}")
        if not isinstance(schema, SurrogateSchema):
            raise ConfigError(f"schema must be a SurrogateSchema, got {type(schema).__name__}")
        if len(schema.params) < 1 or schema.n_coords < 1 or schema.n_channels < 1:
            raise ShapeError(
                "an LDNet needs at least one parameter, coordinate and variable (the trajectory "
                f"is a function of u since s_-1 = 0); schema has params={schema.params}, "
                f"coords={schema.coords}, variables={schema.variables}"
            )
        if config.latent_dim is None:
            raise ConfigError(
                "LDNetConfig.latent_dim is None: give it to build a model (LDNet.fit chooses "
                "it from the archive for the closed-form fit)"
            )
        self.config = config
        self.schema = schema
        self.latent_dim = config.latent_dim
        self.param_dim = len(schema.params)
        self.history: TrainingHistory | None = None
        self.metadata: dict[str, Any] = {}
        self.quality: FitReport | None = None

        dt0 = config.dt0 if config.dt0 is not None else 1.0 / schema.n_frames
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.dynamics: VectorFieldNet | ImpulseLinearField | PolynomialField = (
                config.build_dynamics(self.param_dim, dt0)
            )
            self.decoder: MLPDecoder | SeparableDecoder | CosineDecoder = config.build_decoder(
                schema.n_coords, schema.n_channels
            )
        self.register_buffer("dt0", torch.tensor(float(dt0)))
        if config.learnable_dt:
            self.log_dt_scale = nn.Parameter(torch.tensor(0.0))
        if config.initial_state is not None:
            self.initial_states = nn.Parameter(_initial_table(config))
        self.to(device=device, dtype=dtype)

    @property
    def learns_initial_states(self) -> bool:
        """Whether trajectories start at given (learned or fitted) frame-0 states."""
        return self.config.initial_state is not None

    @property
    def dt(self) -> Tensor:
        """Latent Euler step, a 0-d tensor: ``dt0 * exp(log_dt_scale)`` when learnable."""
        if self.config.learnable_dt:
            return self.dt0 * torch.exp(self.log_dt_scale)
        return self.dt0

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        """``ds/dt = F(s, u)``: ``s`` (..., d_s), ``u`` (..., d_u), dims broadcast -> (..., d_s)."""
        return self.dynamics(s, u)

    def rollout(self, u: Tensor, n_frames: int, s0: Tensor | None = None) -> Tensor:
        """Latent trajectory from the shifted start ``s_{-1} = 0`` (paper eq. 13), or from ``s0``.

        Parameters
        ----------
        u : Tensor, shape (..., d_u)
            Normalized parameters (static over the trajectory).
        n_frames : int
            Number of frames; frame ``k`` is ``s_k``, reached after ``k + 1`` steps
            (after ``k`` steps from ``s0`` when given).
        s0 : Tensor, shape (..., d_s), optional
            The state of frame 0; required when the model learns initial states, not
            allowed otherwise.

        Returns
        -------
        Tensor, shape (..., n_frames, d_s)

        Raises
        ------
        ShapeError
            ``u`` or ``s0`` has the wrong shape, ``s0`` is missing for a model that
            learns initial states or given to one that does not.
        """
        if u.dim() == 0 or u.shape[-1] != self.param_dim:
            raise ShapeError(
                f"u must have last dimension param_dim={self.param_dim}, got {tuple(u.shape)}"
            )
        if n_frames < 1:
            raise ShapeError(f"n_frames must be >= 1, got {n_frames}")
        if self.learns_initial_states != (s0 is not None):
            raise ShapeError(
                "s0 (the frame-0 latent states) is required by a model with learned initial "
                "states and not used otherwise: " + ("pass s0" if s0 is None else "leave s0 None")
            )
        if s0 is not None:
            if s0.shape != (*u.shape[:-1], self.latent_dim):
                raise ShapeError(
                    f"s0 must have shape {(*u.shape[:-1], self.latent_dim)} (u's batch, "
                    f"latent_dim), got {tuple(s0.shape)}"
                )
            s, _ = euler_rollout(self.vector_field, s0, u, self.dt, n_frames - 1)
            return s
        s_start = u.new_zeros((*u.shape[:-1], self.latent_dim))
        s, _ = euler_rollout(self.vector_field, s_start, u, self.dt, n_frames)
        return s[..., 1:, :]

    def prepare_points(self, points: Tensor) -> Tensor:
        """State-independent part of decoding, computed once per point set.

        ``points`` (..., P, n_coords) -> (..., P, F): the first-layer projection of the
        Fourier features (MLP decoder) or the spatial basis folded into the
        coefficient network's output layer (separable decoder).  When reusing the
        result across several backward passes with trainable weights, compute it
        under ``torch.no_grad()`` (or freeze the weights), since it depends on the
        decoder's weights.
        """
        return self.decoder.prepare_points(points)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., d_s), ``prepared`` (..., P, F), leading dims broadcast -> (..., P, C)."""
        return self.decoder.decode_prepared(s, prepared)

    def misfit_prepared(
        self, s: Tensor, prepared: Tensor, data: Tensor, sqrt_weight: Tensor
    ) -> Tensor:
        """``sum((sqrt_weight * (decode_prepared(s, prepared) - data))**2)`` over points
        and channels: (...,).  The MLP decoder computes it in one fused pass in
        assimilation (see :mod:`xlevda.surrogates.fused`)."""
        misfit = getattr(self.decoder, "misfit_prepared", None)
        if misfit is not None:
            return misfit(s, prepared, data, sqrt_weight)
        return weighted_misfit(self.decoder.decode_prepared(s, prepared), data, sqrt_weight)

    def decode_channel(self, s: Tensor, prepared: Tensor, channel: int) -> Tensor:
        """One channel of :meth:`decode_prepared`, (..., P), at the decoder's cost for it
        (a third of all three for the separable decoder on an output grid)."""
        return self.decoder.decode_channel(s, prepared, channel)

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        """Fields at query points (paper eq. 14).

        ``s`` (..., d_s), ``points`` (..., P, n_coords), leading dims broadcast ->
        (..., P, C).  Equals ``decode_prepared(s, prepare_points(points))``.
        """
        return self.decoder(s, points)

    def forward(self, u: Tensor, points: Tensor, n_frames: int, s0: Tensor | None = None) -> Tensor:
        """Roll out and decode: the training forward pass.

        Parameters
        ----------
        u : Tensor, shape (..., d_u)
            Normalized parameters of each run.
        points : Tensor, shape (n_frames, P, n_coords) or (P, n_coords)
            Query points per frame, or shared by all frames.
        n_frames : int
            Number of frames.
        s0 : Tensor, shape (..., d_s), optional
            Frame-0 latent states (see :meth:`rollout`).

        Returns
        -------
        Tensor, shape (..., n_frames, P, C)
        """
        if points.dim() not in (2, 3) or (points.dim() == 3 and points.shape[0] != n_frames):
            raise ShapeError(
                f"points must have shape (n_frames={n_frames}, P, n_coords) or (P, n_coords), "
                f"got {tuple(points.shape)}"
            )
        return self.decoder(self.rollout(u, n_frames, s0), points)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str], *, half: Sequence[str] = ()) -> None:
        """Write the model to one file (``torch.save`` of plain containers and tensors).

        The file holds ``format`` (``"xlevda-surrogate"``), ``format_version``,
        ``xlevda_version``, ``kind`` (``"ldnet"``), ``config`` and ``schema`` (as
        dicts), ``dtype``, ``state_dict`` (CPU tensors), ``history`` (dict or None),
        ``metadata``, ``quality`` (dict or None; optional: older files lack it) and
        ``sha256``, the checksum of all the rest (older files lack it), verified by
        :meth:`load`.  The file appears under ``path`` only once completely written.

        Parameters
        ----------
        path : path-like
            The file.
        half : sequence of str
            State-dict entries stored rounded to float16 (half the bytes), e.g. the
            large, well-scaled matrices of a linear LDNet; :meth:`load` casts them
            back to the model's dtype.  The names are recorded in the file's
            ``metadata["half"]`` (replacing any earlier record); a value beyond
            float16's range raises :class:`~xlevda.errors.ConfigError`.

        Examples
        --------
        >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
        >>> import os, tempfile
        >>> from xlevda.surrogates.schema import SurrogateSchema
        >>> schema = SurrogateSchema.minimal(5)
        >>> model = LDNetModel(LDNetConfig(latent_dim=3, decoder=MLPDecoderConfig()), schema)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     model.save(os.path.join(d, "m.pt"))
        ...     LDNetModel.load(os.path.join(d, "m.pt")).latent_dim
        3
        """
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        half = half_state(state, half)
        meta = {k: v for k, v in self.metadata.items() if k != "half"}
        try:
            meta = json.loads(json.dumps({**meta, **({"half": half} if half else {})}))
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.metadata must be JSON-serializable: {err}") from None
        entries = {
            "kind": MODEL_KIND,
            "config": config_to_dict(self.config),
            "schema": self.schema.to_dict(),
            "dtype": str(self.dt0.dtype).removeprefix("torch."),
            "state_dict": state,
            "history": None if self.history is None else self.history.to_dict(),
            "metadata": meta,
            "quality": None if self.quality is None else self.quality.to_dict(),
        }
        write_file(path, SURROGATE_FORMAT, entries)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        map_location: torch.device | str | None = None,
    ) -> Self:
        """Read a model written by :meth:`save` (as ``cls``, so subclasses load as themselves).

        Parameters
        ----------
        path : path-like
            The file.
        map_location : device or str, optional
            Device of the loaded weights (default CPU).

        Raises
        ------
        SurrogateFileError
            The file is not a torch file, is truncated or corrupt, lacks keys, has
            another format identifier, a newer format version, another model kind,
            content that does not match its checksum, an invalid config or schema
            value, or weights that do not match the sizes its config and schema
            declare (checked before the model is allocated) or are not finite.
        FileNotFoundError
            ``path`` does not exist.
        """
        where = repr(os.fspath(path))
        device = torch.device("cpu" if map_location is None else map_location)
        payload = read_file(path, SURROGATE_FORMAT, required=_REQUIRED_KEYS, kind=MODEL_KIND)
        dtype = getattr(torch, str(payload["dtype"]), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise SurrogateFileError(f"{where} has an invalid dtype {payload['dtype']!r}")
        config, schema, history, quality = _parts(where, payload)
        declared = declared_state(where, lambda: cls(config, schema))
        state = check_state(where, payload["state_dict"], declared)
        model = cls(config, schema).to(dtype=dtype)
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise SurrogateFileError(
                f"{where}: the weights do not match the stored config: {err}"
            ) from None
        dt = float(model.dt.detach())
        if not (math.isfinite(dt) and dt > 0):
            raise SurrogateFileError(f"{where}: the latent step dt is {dt}, expected finite > 0")
        model.history = history
        model.metadata = dict(payload["metadata"])
        model.quality = quality
        return model.to(device=device)

    def extra_repr(self) -> str:
        """Sizes shown by ``print(model)``."""
        n = sum(p.numel() for p in self.parameters())
        return (
            f"latent_dim={self.latent_dim}, param_dim={self.param_dim}, "
            f"dt={float(self.dt.detach()):.4g}, parameters={n}"
        )


def _parts(
    where: str, payload: dict[str, Any]
) -> tuple[LDNetConfig, SurrogateSchema, TrainingHistory | None, FitReport | None]:
    """The config, schema, history and quality report of a file's payload, checked."""
    try:
        config = config_from_dict(payload["config"])
        history = (
            None if payload["history"] is None else TrainingHistory.from_dict(payload["history"])
        )
        quality = payload.get("quality")
        quality = None if quality is None else FitReport.from_dict(quality)
        if not isinstance(payload["metadata"], dict):
            raise TypeError(f"metadata must be a dict, got {type(payload['metadata']).__name__}")
    except (XlevdaError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise SurrogateFileError(
            f"{where} has an invalid config, history, quality or metadata: "
            f"{type(err).__name__}: {err}"
        ) from None
    return config, schema_from_dict(where, payload["schema"]), history, quality


def _initial_table(config: LDNetConfig) -> Tensor:
    """The initial-state table (n_runs, d_s), normal with ``init_scale``, from ``config.seed``."""
    init = config.initial_state
    assert init is not None
    if init.n_runs is None:
        raise ConfigError(
            "LearnedInitialState.n_runs is None: give the number of training runs (LDNet.fit "
            "sets it)"
        )
    gen = torch.Generator().manual_seed(config.seed)
    return init.init_scale * torch.randn(init.n_runs, config.latent_dim, generator=gen)
