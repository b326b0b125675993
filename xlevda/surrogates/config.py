"""Typed, self-validating configuration of an LDNet surrogate and its training.

Every config is a frozen dataclass that checks its fields in ``__post_init__``
and raises :class:`~xlevda.errors.ConfigError` naming the field, the value and
the valid range.  :func:`config_to_dict` / :func:`config_from_dict` round-trip a
full :class:`LDNetConfig` through plain JSON containers (this is how it is stored
inside a saved surrogate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from xlevda.errors import ConfigError
from xlevda.surrogates.decoder_configs import (
    DECODER_CONFIGS,
    CosineDecoderConfig,
    DecoderConfig,
)
from xlevda.surrogates.decoders import CosineDecoder, MLPDecoder, SeparableDecoder
from xlevda.surrogates.dynamics_configs import (
    DYNAMICS_CONFIGS,
    DynamicsConfig,
    LinearDynamicsConfig,
    PolynomialDynamicsConfig,
)
from xlevda.surrogates.polynomial import PolynomialField
from xlevda.surrogates.vector_fields import ImpulseLinearField, VectorFieldNet
from xlevda.validate import check_choice, check_int, check_real

__all__ = [
    "ACTIVATIONS",
    "GRADIENT_LATENT_DIM",
    "LR_SCHEDULES",
    "LDNetConfig",
    "LearnedInitialState",
    "LinearDynamicsConfig",
    "PolynomialDynamicsConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
]

ACTIVATIONS = ("tanh", "silu", "gelu")
"""Smooth activations (the assimilation runs L-BFGS through the networks)."""

GRADIENT_LATENT_DIM = 8
"""``latent_dim`` of a gradient-trained LDNet whose config leaves it ``None``."""

LR_SCHEDULES = ("constant", "step", "cosine")
"""Per-epoch learning-rate schedules of :class:`TrainConfig`."""

Activation = Literal["tanh", "silu", "gelu"]
LRSchedule = Literal["constant", "step", "cosine"]


@dataclass(frozen=True)
class LearnedInitialState:
    """Per-run learned initial latent states (an auto-decoder, as in DeepSDF).

    Each training run ``r`` gets its own trainable initial state ``s_0^r`` (a table
    of shape ``(n_runs, latent_dim)``), trained jointly with the networks under the
    penalty ``1/2 regularization |s_0^r|^2`` (added to the mean squared error per
    run of a batch); run ``r``'s trajectory starts at ``s_0^r`` (frame 0) instead
    of one Euler step from ``s_{-1} = 0``, so runs that differ in initial
    condition, not only in parameters, are represented.  A state not seen in
    training is found by fitting the decoder to one frame
    (:func:`xlevda.surrogates.initial_state.fit_initial_state`).

    Attributes
    ----------
    n_runs : int or None
        Rows of the table (>= 1), one per training run; ``LDNet.fit`` sets it to the
        number of training runs when ``None``.
    regularization : float
        ``lambda`` of the penalty (>= 0).
    init_scale : float
        Standard deviation of the table's random initialization (>= 0).
    lr_factor : float
        The table's learning rate relative to ``TrainConfig.lr`` (> 0): each row is
        updated only when its run is in a batch, once per epoch.

    Examples
    --------
    >>> LearnedInitialState(n_runs=10).regularization
    0.001
    """

    n_runs: int | None = None
    regularization: float = 1e-3
    init_scale: float = 0.01
    lr_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.n_runs is not None:
            check_int("LearnedInitialState.n_runs", self.n_runs, 1)
        check_real("LearnedInitialState.regularization", self.regularization, 0.0)
        check_real("LearnedInitialState.init_scale", self.init_scale, 0.0)
        check_real("LearnedInitialState.lr_factor", self.lr_factor, 0.0, low_open=True)


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`xlevda.surrogates.training.train`.

    Attributes
    ----------
    epochs : int
        Passes over the training runs (>= 1).
    batch_size : int
        Runs per optimizer step (>= 1); each run's whole trajectory is rolled out.
    points_per_frame : int or None
        Query points sampled (without replacement, different per frame) per frame
        and batch (>= 1); ``None`` uses every point.
    val_points_per_frame : int or None
        Points per frame for validation; ``None`` uses every point, an integer a
        fixed random subset (the same every epoch, so epochs compare).
    lr : float
        Initial Adam learning rate (> 0).
    lr_schedule : {"constant", "step", "cosine"}
        Per-epoch decay: ``step`` multiplies by ``lr_decay_factor`` every
        ``lr_decay_every`` epochs; ``cosine`` anneals from ``lr`` to
        ``lr * lr_min_factor`` over ``epochs``.
    lr_decay_every : int
        Epochs between step decays (>= 1).
    lr_decay_factor : float
        Step decay factor, in (0, 1].
    lr_min_factor : float
        Final learning rate of the cosine schedule relative to ``lr``, in [0, 1].
    weight_decay : float
        Decoupled (AdamW) weight decay (>= 0); 0 is plain Adam.
    grad_clip : float or None
        Maximum global gradient norm (> 0); ``None`` disables clipping.
    patience : int or None
        Stop after this many epochs without a lower validation loss (>= 1);
        ``None`` trains all ``epochs``.
    validation_fraction : float
        Fraction of runs held out for validation by ``LDNet.fit`` (in [0, 1));
        :func:`~xlevda.surrogates.training.train` itself takes explicit sources.
    seed : int
        Seed of run shuffling, point sampling and the validation split (>= 0).

    Examples
    --------
    >>> TrainConfig(epochs=10, lr_schedule="step", lr_decay_every=5).lr
    0.001
    """

    epochs: int = 200
    batch_size: int = 8
    points_per_frame: int | None = 512
    val_points_per_frame: int | None = None
    lr: float = 1e-3
    lr_schedule: LRSchedule = "cosine"
    lr_decay_every: int = 100
    lr_decay_factor: float = 0.5
    lr_min_factor: float = 0.01
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    patience: int | None = None
    validation_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("TrainConfig.epochs", self.epochs, 1)
        check_int("TrainConfig.batch_size", self.batch_size, 1)
        if self.points_per_frame is not None:
            check_int("TrainConfig.points_per_frame", self.points_per_frame, 1)
        if self.val_points_per_frame is not None:
            check_int("TrainConfig.val_points_per_frame", self.val_points_per_frame, 1)
        check_real("TrainConfig.lr", self.lr, 0.0, low_open=True)
        check_choice("TrainConfig.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_int("TrainConfig.lr_decay_every", self.lr_decay_every, 1)
        check_real("TrainConfig.lr_decay_factor", self.lr_decay_factor, 0.0, 1.0, low_open=True)
        check_real("TrainConfig.lr_min_factor", self.lr_min_factor, 0.0, 1.0)
        check_real("TrainConfig.weight_decay", self.weight_decay, 0.0)
        if self.grad_clip is not None:
            check_real("TrainConfig.grad_clip", self.grad_clip, 0.0, low_open=True)
        if self.patience is not None:
            check_int("TrainConfig.patience", self.patience, 1)
        check_real(
            "TrainConfig.validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True
        )
        check_int("TrainConfig.seed", self.seed, 0)


@dataclass(frozen=True)
class LDNetConfig:
    """Architecture of an LDNet surrogate (paper eq. 12-14) and its training options.

    The parameter, coordinate and channel counts come from the
    :class:`~xlevda.surrogates.schema.SurrogateSchema`, not from the config.

    Attributes
    ----------
    latent_dim : int or None
        ``d_s`` (>= 1).  ``None`` (default): chosen from the archive by the closed-form
        fit (``LDNet.fit``: one plus the proper orthogonal modes that ``mode_tolerance``
        and ``max_modes`` of
        :class:`~xlevda.surrogates.dynamics_configs.ClosedFormDynamicsConfig` ask for),
        8 for a gradient-trained LDNet.
    dynamics_width, dynamics_depth : int
        Hidden width and number of hidden layers of the vector field ``F(s, u)``.
    dynamics_linear : bool
        Add a linear term ``A s + B u`` (zero at initialization) to ``F``.
    dynamics : LinearDynamicsConfig, PolynomialDynamicsConfig or None
        Impulse-driven linear or polynomial latent dynamics, fitted in closed form with
        a :class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` decoder; or
        ``None``: the MLP vector field of the three fields above, trained by gradient
        descent with ``decoder``.  With neither ``dynamics`` nor ``decoder`` given (the
        default) it is ``PolynomialDynamicsConfig()``.
    decoder : MLPDecoderConfig, SeparableDecoderConfig, CosineDecoderConfig or None
        Decoder family and sizes.  ``None`` (default): ``CosineDecoderConfig()``, with
        ``PolynomialDynamicsConfig()`` unless ``dynamics`` is given: **the default
        LDNet is the closed-form polynomial one** (operator inference, seconds to
        minutes on a CPU).  A decoder given without ``dynamics`` is trained by gradient
        descent with the MLP vector field: name a neural one (``MLPDecoderConfig()``,
        ``SeparableDecoderConfig()``) for a gradient-trained LDNet; the closed form with
        a given cosine decoder needs ``dynamics`` too.
    activation : {"tanh", "silu", "gelu"}
        Activation of every network (smooth: the assimilation differentiates it).
    dt0 : float or None
        Initial latent Euler step (> 0); ``None`` means ``1 / schema.n_frames``,
        so the latent trajectory spans unit time.
    learnable_dt : bool or None
        Train ``dt = dt0 * exp(log_scale)`` jointly with the weights.  ``None``
        (default): ``True`` for a gradient-trained LDNet, ``False`` with ``dynamics``.
    initial_state : LearnedInitialState or None
        Learn one initial latent state per training run (trajectories then start
        there, not from ``s_{-1} = 0``); ``None`` (default): the trajectory is a
        function of the parameters alone.  Not with ``dynamics``: give a neural
        ``decoder`` (gradient training).
    seed : int
        Seed of the weight initialization and the Fourier frequencies (>= 0).
    train : TrainConfig
        Training options.

    Examples
    --------
    >>> type(LDNetConfig().dynamics).__name__, LDNetConfig().decoder.kind
    ('PolynomialDynamicsConfig', 'cosine')
    >>> from xlevda.surrogates.decoder_configs import SeparableDecoderConfig
    >>> cfg = LDNetConfig(latent_dim=4, decoder=SeparableDecoderConfig(n_basis=8))
    >>> cfg.dynamics is None, cfg.learnable_dt
    (True, True)
    >>> config_from_dict(config_to_dict(cfg)) == cfg
    True
    """

    latent_dim: int | None = None
    dynamics_width: int = 32
    dynamics_depth: int = 3
    dynamics_linear: bool = False
    dynamics: DynamicsConfig | None = None
    decoder: DecoderConfig | None = None
    activation: Activation = "tanh"
    dt0: float | None = None
    learnable_dt: bool | None = None
    initial_state: LearnedInitialState | None = None
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        self._resolve_defaults()
        if self.latent_dim is not None:
            check_int("LDNetConfig.latent_dim", self.latent_dim, 1)
        check_int("LDNetConfig.dynamics_width", self.dynamics_width, 1)
        check_int("LDNetConfig.dynamics_depth", self.dynamics_depth, 1)
        if not isinstance(self.decoder, tuple(DECODER_CONFIGS.values())):
            raise ConfigError(
                "LDNetConfig.decoder must be an MLPDecoderConfig, a SeparableDecoderConfig or a "
                f"CosineDecoderConfig, got {self.decoder!r}"
            )
        if self.dynamics is not None:
            if not isinstance(self.dynamics, tuple(DYNAMICS_CONFIGS.values())):
                raise ConfigError(
                    "LDNetConfig.dynamics must be None or a LinearDynamicsConfig or a "
                    f"PolynomialDynamicsConfig, got {self.dynamics!r}"
                )
            kind = type(self.dynamics).__name__
            if self.learnable_dt:
                raise ConfigError(
                    f"LDNetConfig.learnable_dt must be False with {kind} (its clock "
                    "switches the forcing off after exactly one step of the fixed dt); "
                    "for a gradient-trained LDNet give a neural decoder, e.g. "
                    "decoder=MLPDecoderConfig()"
                )
            if self.latent_dim is not None and self.latent_dim < 2:
                raise ConfigError(
                    f"LDNetConfig.latent_dim must be >= 2 with {kind} (the state "
                    f"and its clock), got {self.latent_dim}"
                )
        check_choice("LDNetConfig.activation", self.activation, ACTIVATIONS)
        if not isinstance(self.dynamics_linear, bool):
            raise ConfigError(
                f"LDNetConfig.dynamics_linear must be a bool, got {self.dynamics_linear!r}"
            )
        if self.dt0 is not None:
            check_real("LDNetConfig.dt0", self.dt0, 0.0, low_open=True)
        if not isinstance(self.learnable_dt, bool):
            raise ConfigError(f"LDNetConfig.learnable_dt must be a bool, got {self.learnable_dt!r}")
        if self.initial_state is not None:
            if not isinstance(self.initial_state, LearnedInitialState):
                raise ConfigError(
                    "LDNetConfig.initial_state must be None or a LearnedInitialState, got "
                    f"{self.initial_state!r}"
                )
            if self.dynamics is not None:
                raise ConfigError(
                    f"LDNetConfig.initial_state must be None with {type(self.dynamics).__name__} "
                    "(its closed-form fit starts every run from s_-1 = 0); learned initial "
                    "states need a gradient-trained LDNet: give a neural decoder, e.g. "
                    "decoder=MLPDecoderConfig()"
                )
        check_int("LDNetConfig.seed", self.seed, 0)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"LDNetConfig.train must be a TrainConfig, got {self.train!r}")

    def _resolve_defaults(self) -> None:
        """Fill the fields left ``None`` that have a fixed resolution: with no decoder the
        closed-form polynomial LDNet (a cosine decoder; polynomial dynamics unless given),
        ``learnable_dt`` on for gradient training only, ``latent_dim`` 8 for gradient
        training (the closed-form fit chooses it from the archive)."""
        if self.decoder is None:
            if self.dynamics is None:
                object.__setattr__(self, "dynamics", PolynomialDynamicsConfig())
            object.__setattr__(self, "decoder", CosineDecoderConfig())
        if self.learnable_dt is None:
            object.__setattr__(self, "learnable_dt", self.dynamics is None)
        if self.latent_dim is None and self.dynamics is None:
            object.__setattr__(self, "latent_dim", GRADIENT_LATENT_DIM)

    def build_dynamics(
        self, param_dim: int, dt: float
    ) -> VectorFieldNet | ImpulseLinearField | PolynomialField:
        """The latent vector field for ``param_dim`` parameters and the Euler step ``dt``:
        ``dynamics.build(...)``, or the residual-MLP field of ``dynamics_width``,
        ``dynamics_depth`` and ``dynamics_linear`` when ``dynamics`` is ``None`` (its
        weights from torch's global generator)."""
        if self.dynamics is not None:
            return self.dynamics.build(self.latent_dim, param_dim, dt)
        return VectorFieldNet(
            self.latent_dim,
            param_dim,
            self.dynamics_width,
            self.dynamics_depth,
            self.activation,
            self.dynamics_linear,
        )

    def build_decoder(
        self, n_coords: int, n_channels: int
    ) -> MLPDecoder | SeparableDecoder | CosineDecoder:
        """The decoder for ``n_coords`` coordinates per point and ``n_channels`` outputs:
        ``decoder.build(...)`` with this config's latent size, activation and seed."""
        return self.decoder.build(
            self.latent_dim, n_coords, n_channels, activation=self.activation, seed=self.seed
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON containers; see :func:`config_to_dict`."""
        return config_to_dict(self)


def config_to_dict(config: LDNetConfig) -> dict[str, Any]:
    """JSON-serializable form of ``config`` (round-trips through :func:`config_from_dict`).

    Examples
    --------
    >>> config_to_dict(LDNetConfig())["decoder"]["kind"]
    'cosine'
    """
    return asdict(config)


def _build(cls: type, data: object, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a dict, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where} has unknown keys {unknown}; valid keys are {sorted(names)}")
    return cls(**data)


def config_from_dict(data: dict[str, Any]) -> LDNetConfig:
    """Rebuild an :class:`LDNetConfig` from :func:`config_to_dict` output.

    Missing keys take their defaults; unknown keys raise :class:`ConfigError`.

    Examples
    --------
    >>> config_from_dict({"latent_dim": 4, "decoder": {"kind": "separable"}}).decoder.n_basis
    32
    """
    if not isinstance(data, dict):
        raise ConfigError(f"LDNetConfig data must be a dict, got {type(data).__name__}")
    d = dict(data)
    if "decoder" in d:
        dec = d["decoder"]
        kind = dec.get("kind", "mlp") if isinstance(dec, dict) else None
        if kind not in DECODER_CONFIGS:
            raise ConfigError(
                f"LDNetConfig.decoder.kind must be one of {tuple(DECODER_CONFIGS)}, got {kind!r}"
            )
        d["decoder"] = _build(DECODER_CONFIGS[kind], dec, "LDNetConfig.decoder")
    if "train" in d:
        d["train"] = _build(TrainConfig, d["train"], "LDNetConfig.train")
    if d.get("dynamics") is not None:
        dyn = d["dynamics"]
        kind = dyn.get("kind", "linear") if isinstance(dyn, dict) else None  # older files: none
        if isinstance(dyn, dict) and "kernel" not in dyn:  # files written before the option
            dyn = {**dyn, "kernel": "isotropic"}
        if kind not in DYNAMICS_CONFIGS:
            raise ConfigError(
                f"LDNetConfig.dynamics.kind must be one of {tuple(DYNAMICS_CONFIGS)}, got {kind!r}"
            )
        d["dynamics"] = _build(DYNAMICS_CONFIGS[kind], dyn, "LDNetConfig.dynamics")
    if d.get("initial_state") is not None:
        d["initial_state"] = _build(
            LearnedInitialState, d["initial_state"], "LDNetConfig.initial_state"
        )
    return _build(LDNetConfig, d, "LDNetConfig")
