"""LD-EnSF: the ensemble score filter in the latent space of a surrogate.

The filtered state is the augmented latent state ``z = (s, u)`` of a surrogate
(``d_z = d_s + d_u``).  The ensemble starts at the shifted start ``s_{-1} = 0``
with parameters drawn uniformly from the prior range.  Every latent step
forecasts all members one forward Euler step with the surrogate (``u`` static);
at each observation frame of the :class:`~xlevda.surrogates.observation_network.ObservationNetwork`
the LSTM encoder turns the observation history up to that frame into a
pseudo-observation ``z_obs`` of ``(s, u)``, and one EnSF analysis
(:func:`xlevda.core.ensf.ensf_analysis`) conditions the forecast ensemble on

    z_obs = z + e,   e ~ N(0, diag(sigma^2)),

with ``sigma`` the encoder's validation error for that observation index
(:meth:`~xlevda.surrogates.encoder.ObservationEncoder.observation_std`) times
``obs_error_factor``.

The analysis runs in the coordinates ``x = obs_scale * (z - m) / c`` with
``c = min(sigma, sd)`` component-wise (``m`` and ``sd`` are the encoder's
training mean and standard deviation of ``z``), so that the pseudo-observation
error is ``obs_scale`` in x wherever it is below the training spread.  The
EnSF is not invariant to such a change of coordinates (its diffusion adds unit
noise, and its likelihood term is integrated by explicit Euler steps), so this
choice matters:

- stiffness: explicit Euler of the likelihood term stays stable while
  ``obs_scale^2 * ensf.steps`` is well above 1 (the default 0.3 with 100 steps
  gives 9), whatever the encoder's errors;
- noise floor: the last reverse step leaves noise of about ``sqrt(1 / steps)``
  in x, i.e. ``sqrt(1 / steps) * c / obs_scale`` in z (a third of ``sigma`` by
  default), which acts as an inflation.  Capping ``c`` at the training spread
  bounds it when ``sigma`` is large: with ``obs_error_factor = 1e4`` the
  ensemble keeps a spread of the order of the training spread instead of
  diverging, but it does not return the plain forecast either.

Measured on the linear test problem of ``tests/core/test_ldensf.py`` (8 truth
runs, K = 32, 100 steps, late half of 12 observations, RMSE in units of the
training spread): ``obs_scale`` 0.2 / 0.3 / 0.5 / 1.0 gave 0.072 / 0.062 /
0.130 / 0.446, against 0.101 for the pseudo-observations alone and 1.19 for the
free forecast.  Coordinates ``z / sd`` times one factor instead (as the
reference code scales ``z`` by one factor) diverged for factors 1 and 2 and
gave 0.119 at 3 and 0.260 at 5.  On an identical twin with the pretrained
tsunami LDNet (eta at 16 points, 10 % noise, 6 truth runs, K = 50) ``obs_scale``
0.2 / 0.3 / 0.5 gave 0.051 / 0.063 / 0.097 against 0.055 for the
pseudo-observations and 1.14 for the free forecast.

:func:`ldensf_filter` runs a whole observation sequence: the encoder's
pseudo-observations of the sequence (:func:`pseudo_observations`), the initial
ensemble and its random generator (:func:`ldensf_start`), then one
:func:`ldensf_step` per observation (the forecast to its frame, then
:func:`ldensf_analysis`), every random draw from that one generator.  The method
(:class:`xlevda.methods.LDEnSF`) runs the same steps one window at a time.

Torch only.  Members are a batch dimension throughout.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from xlevda.core.dynamics import trajectory
from xlevda.core.ensf import EnSFConfig, ensf_analysis
from xlevda.core.prior import prior_params
from xlevda.core.rng import generator
from xlevda.core.scores import gaussian_likelihood_score
from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.protocol import LatentEncoder, SensorNetwork, Surrogate
from xlevda.validate import is_int, is_positive

__all__ = [
    "LDEnSFConfig",
    "LDEnSFResult",
    "PseudoObservations",
    "ldensf_analysis",
    "ldensf_filter",
    "ldensf_start",
    "ldensf_step",
    "pseudo_observations",
]


@dataclass(frozen=True)
class LDEnSFConfig:
    """Options of :func:`ldensf_filter`.

    Attributes
    ----------
    members : int
        Ensemble size ``K`` (>= 2).
    ensf : EnSFConfig
        Reverse-SDE options of every analysis.
    prior_range : tuple of (float, float), optional
        Range of each parameter in physical units for the initial ensemble (drawn
        uniformly); ``None`` is the surrogate schema's training range.
    obs_error_factor : float
        Multiplies the encoder's validation error to give the pseudo-observation
        error standard deviation ``sigma`` (> 0).  That error was measured with the
        training noise (:attr:`~xlevda.surrogates.encoder.EncoderConfig.noise_ratio`);
        raise the factor when the observations are noisier.
    obs_scale : float
        The pseudo-observation error in the analysis coordinates
        ``x = obs_scale * (z - m) / min(sigma, sd)`` (> 0); see the module notes.
    seed : int
        Seed of the initial ensemble and of every analysis (>= 0).

    Examples
    --------
    >>> LDEnSFConfig(members=20).members
    20
    """

    members: int = 100
    ensf: EnSFConfig = field(default_factory=EnSFConfig)
    prior_range: tuple[tuple[float, float], ...] | None = None
    obs_error_factor: float = 1.0
    obs_scale: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if not is_int(self.members, 2):
            raise ConfigError(f"LDEnSFConfig.members must be an integer >= 2, got {self.members!r}")
        if not isinstance(self.ensf, EnSFConfig):
            raise ConfigError(
                f"LDEnSFConfig.ensf must be an EnSFConfig, got {type(self.ensf).__name__}"
            )
        if self.prior_range is not None:
            try:
                pairs = tuple((float(lo), float(hi)) for lo, hi in self.prior_range)
            except (TypeError, ValueError):
                pairs = None
            if not pairs or any(
                not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi) for lo, hi in pairs
            ):
                raise ConfigError(
                    "LDEnSFConfig.prior_range must be None or one finite (lo, hi) with "
                    f"lo <= hi per parameter, got {self.prior_range!r}"
                )
            object.__setattr__(self, "prior_range", pairs)
        for name in ("obs_error_factor", "obs_scale"):
            if not is_positive(getattr(self, name)):
                raise ConfigError(
                    f"LDEnSFConfig.{name} must be a finite number > 0, got {getattr(self, name)!r}"
                )
        if not is_int(self.seed, 0):
            raise ConfigError(f"LDEnSFConfig.seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class LDEnSFResult:
    """Analysis ensembles and per-analysis diagnostics of :func:`ldensf_filter`.

    Frame ``k`` is the latent state after ``k + 1`` Euler steps from ``s_{-1} = 0``
    (the surrogate's frame convention).  Spreads are in standardized latent units
    (each component divided by the encoder's training standard deviation).

    Attributes
    ----------
    s : Tensor, shape (N, K, d_s)
        Latent ensemble at frames ``0..N-1``: the analysis at observation frames,
        the forecast elsewhere.
    u : Tensor, shape (N, K, d_u)
        Normalized parameters at the same frames.
    analysed : Tensor, shape (N,), bool
        Whether frame ``k`` had an analysis.
    obs_frames : Tensor, shape (T,), int64
        Frame of each observation.
    pseudo_obs : Tensor, shape (T, d_z)
        Encoder output ``z_obs`` for each observation (latent units).
    pseudo_obs_std : Tensor, shape (T, d_z)
        Its error standard deviation as used by the analysis.
    forecast_spread, analysis_spread : Tensor, shape (T,)
        Root mean square over components of the ensemble standard deviation.
    forecast_misfit, analysis_misfit : Tensor, shape (T,)
        Root mean square over components of ``(mean(z) - z_obs) / pseudo_obs_std``.
    replaced : Tensor, shape (T,), int64
        Members whose analysis was not finite and which kept their forecast.
    seconds : Tensor, shape (T,), float64
        Wall time of each analysis.
    """

    s: Tensor
    u: Tensor
    analysed: Tensor
    obs_frames: Tensor
    pseudo_obs: Tensor
    pseudo_obs_std: Tensor
    forecast_spread: Tensor
    analysis_spread: Tensor
    forecast_misfit: Tensor
    analysis_misfit: Tensor
    replaced: Tensor
    seconds: Tensor


def _identity(x: Tensor) -> Tensor:
    return x


def _spread(z: Tensor, unit: Tensor) -> Tensor:
    return (z / unit).std(0).square().mean().sqrt()


def _misfit(z: Tensor, z_obs: Tensor, std: Tensor) -> Tensor:
    return ((z.mean(0) - z_obs) / std).square().mean().sqrt()


def _check_inputs(
    surrogate: Surrogate,
    encoder: LatentEncoder,
    network: SensorNetwork,
    observations: Tensor,
    config: LDEnSFConfig | None,
    n_frames: int | None,
) -> tuple[LDEnSFConfig, Tensor, int]:
    """Check the inputs of :func:`ldensf_filter`.

    Returns the config (the default for ``None``), the frame of each observation
    (T,) int64 and the number of frames to return.
    """
    config = LDEnSFConfig() if config is None else config
    if not isinstance(config, LDEnSFConfig):
        raise ConfigError(f"config must be an LDEnSFConfig, got {type(config).__name__}")
    if not isinstance(encoder, LatentEncoder):
        raise ConfigError(f"encoder must be an ObservationEncoder, got {type(encoder).__name__}")
    if not isinstance(network, SensorNetwork):
        raise ConfigError(f"network must be an ObservationNetwork, got {type(network).__name__}")
    encoder.check(surrogate, network)
    if (
        not isinstance(observations, Tensor)
        or observations.dim() != 2
        or observations.shape[0] < 1
        or observations.shape[1] != network.n_features
    ):
        shape = tuple(observations.shape) if isinstance(observations, Tensor) else observations
        raise ShapeError(
            f"observations must have shape (T >= 1, P * C = {network.n_features}), got {shape}"
        )
    obs_frames = network.frames(observations.shape[0])
    last = int(obs_frames[-1])
    n_frames = last + 1 if n_frames is None else n_frames
    if not is_int(n_frames, last + 1):
        raise ShapeError(
            f"n_frames must be an integer >= {last + 1} (the last observation's frame + 1), "
            f"got {n_frames!r}"
        )
    return config, obs_frames, n_frames


@dataclass(frozen=True)
class PseudoObservations:
    """The encoder's pseudo-observations of ``z = (s, u)`` at each observation.

    Attributes
    ----------
    value : Tensor, shape (T, d_z)
        Encoder output ``z_obs`` (latent units); row ``j`` sees observations ``0..j``.
    std : Tensor, shape (T, d_z)
        Its error standard deviation ``sigma`` (the encoder's validation error times
        ``obs_error_factor``).
    centre, unit : Tensor, shape (d_z,)
        The encoder's training mean and standard deviation of ``z``: the origin of
        the analysis coordinates and the unit of the spreads.
    """

    value: Tensor
    std: Tensor
    centre: Tensor
    unit: Tensor


def pseudo_observations(
    encoder: LatentEncoder,
    observations: Tensor,
    obs_error_factor: float,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> PseudoObservations:
    """The encoder's output for an observation sequence (T, P * C), and its error.

    The encoder runs once over the whole sequence, in its own dtype and on its own
    device; the result is in ``dtype`` on ``device``.

    Raises
    ------
    ConfigError
        An encoder without a positive error estimate.
    """
    if not bool((encoder.error_std > 0).all()):
        raise ConfigError(
            "encoder.error_std must be positive (the pseudo-observation error); train the "
            "encoder with fit_encoder, which sets it from the validation runs"
        )
    to = {"dtype": dtype, "device": device}
    with torch.no_grad():
        value = encoder(observations.to(encoder.in_mean)).to(**to)
    std = (encoder.observation_std(observations.shape[0]) * obs_error_factor).to(**to)
    return PseudoObservations(value, std, encoder.out_mean.to(**to), encoder.out_std.to(**to))


def ldensf_start(
    surrogate: Surrogate,
    config: LDEnSFConfig,
    *,
    dtype: torch.dtype,
    device: torch.device | str,
) -> tuple[Tensor, torch.Generator]:
    """The initial ensemble ``z = (0, u)`` (K, d_z) at the shifted start, and its generator.

    Parameters ``u`` are drawn from ``config.prior_range`` with a generator seeded with
    ``config.seed``, which then supplies every analysis's random draws.
    """
    gen = generator(config.seed, device=device)
    to = {"dtype": dtype, "device": device}
    u = prior_params(surrogate.schema, config.members, gen, config.prior_range, **to)
    s = torch.zeros(config.members, surrogate.latent_dim, **to)
    return torch.cat([s, u], -1), gen


def ldensf_analysis(
    z_f: Tensor,
    pseudo: PseudoObservations,
    j: int,
    config: LDEnSFConfig,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """One EnSF analysis of the forecast ``z_f`` (K, d_z) given pseudo-observation ``j``.

    The analysis runs in the coordinates ``x = (z - centre) / c``,
    ``c = min(sigma, unit) / obs_scale`` (see the module notes); its random draws
    come from ``gen``.

    Returns
    -------
    z_a : Tensor, shape (K, d_z)
        The analysis, a non-finite member replaced by its forecast.
    diagnostics : Tensor, shape (6,), float64
        Forecast and analysis spread, forecast and analysis misfit, members
        replaced, seconds.
    """
    start = time.perf_counter()
    z_obs, obs_std, centre, unit = pseudo.value[j], pseudo.std[j], pseudo.centre, pseudo.unit
    scale = torch.minimum(obs_std, unit) / config.obs_scale  # z - centre = scale * x
    x_obs = (z_obs - centre) / scale
    score = gaussian_likelihood_score(_identity, x_obs, obs_std / scale)
    x_a = ensf_analysis((z_f - centre) / scale, score, config.ensf, gen)
    z_a = x_a * scale + centre
    bad = ~torch.isfinite(z_a).all(-1)
    z_a = torch.where(bad[:, None], z_f, z_a)
    diag = torch.tensor(
        [
            float(_spread(z_f, unit)),
            float(_spread(z_a, unit)),
            float(_misfit(z_f, z_obs, obs_std)),
            float(_misfit(z_a, z_obs, obs_std)),
            float(bad.sum()),
            time.perf_counter() - start,
        ],
        dtype=torch.float64,
    )
    return z_a, diag


def _forecast(surrogate: Surrogate, z: Tensor, n_steps: int) -> Tensor:
    """The ensemble ``z`` (K, d_z) after each of ``n_steps`` Euler steps: (n_steps, K, d_z)."""
    return trajectory(surrogate, z, n_steps).transpose(0, 1)[1:].contiguous()


def ldensf_step(
    surrogate: Surrogate,
    z: Tensor,
    n_steps: int,
    pseudo: PseudoObservations,
    j: int,
    config: LDEnSFConfig,
    gen: torch.Generator,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LD-EnSF cycle: forecast ``z`` (K, d_z) ``n_steps`` Euler steps, then analyse.

    ``z`` is the previous analysis (or the initial ensemble), ``n_steps >= 1`` frames
    before pseudo-observation ``j`` of ``pseudo``; the analysis advances ``gen``.

    Returns
    -------
    forecasts : Tensor, shape (n_steps, K, d_z)
        The forecast at each frame, the last at the analysis's frame.
    z_a, diagnostics : Tensor
        As :func:`ldensf_analysis`.
    """
    with torch.no_grad():
        forecasts = _forecast(surrogate, z, n_steps)
        z_a, diag = ldensf_analysis(forecasts[-1], pseudo, j, config, gen)
    return forecasts, z_a, diag


def ldensf_filter(
    surrogate: Surrogate,
    encoder: LatentEncoder,
    network: SensorNetwork,
    observations: Tensor,
    config: LDEnSFConfig | None = None,
    *,
    n_frames: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> LDEnSFResult:
    """Run LD-EnSF over an observation sequence at a fixed network.

    Parameters
    ----------
    surrogate : Surrogate
        The surrogate the encoder was trained for.
    encoder : LatentEncoder
        Trained encoder, e.g. an :class:`~xlevda.surrogates.encoder.ObservationEncoder`
        (:func:`~xlevda.surrogates.encoder.fit_encoder`).
    network : SensorNetwork
        Where and at which frames ``observations`` were taken; must be the
        encoder's network.
    observations : Tensor, shape (T, P * C)
        Normalized observations, observation ``j`` at frame
        ``network.first_frame + j * network.frame_stride``, flattened ``p * C + c``.
    config : LDEnSFConfig, optional
    n_frames : int, optional
        Frames to return, at least the last observation frame + 1 (the default);
        frames after the last observation are forecasts.
    dtype, device : optional
        Of the ensemble (default those of ``surrogate.dt``).

    Returns
    -------
    LDEnSFResult

    Raises
    ------
    SurrogateFileError, ObservationError
        ``encoder`` was trained for another surrogate or network.
    ShapeError
        ``observations`` or ``n_frames`` do not fit the network.
    ConfigError
        Bad config, or an encoder without a positive error estimate.

    Examples
    --------
    >>> import torch
    >>> from xlevda.surrogates.encoder import EncoderConfig
    >>> from xlevda.surrogates.encoder_training import fit_encoder, surrogate_histories
    >>> from xlevda.surrogates.observation_network import ObservationNetwork
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda import LDNetConfig, MLPDecoderConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> model = LDNetModel(LDNetConfig(latent_dim=2, decoder=MLPDecoderConfig()), schema)
    >>> net = ObservationNetwork(points=[[0.0], [0.5]], channels=(0,))
    >>> y, u = surrogate_histories(model, net, n_runs=8, n_obs=5)
    >>> enc = fit_encoder(model, net, y, u, EncoderConfig(hidden=8, epochs=2))
    >>> cfg = LDEnSFConfig(members=4, ensf=EnSFConfig(steps=10))
    >>> out = ldensf_filter(model, enc, net, y[0], cfg, n_frames=7)
    >>> out.s.shape, out.u.shape, out.analysed.tolist()
    (torch.Size([7, 4, 2]), torch.Size([7, 4, 1]), [True, True, True, True, True, False, False])
    """
    config, obs_frames, n_frames = _check_inputs(
        surrogate, encoder, network, observations, config, n_frames
    )
    like = torch.as_tensor(surrogate.dt)
    to = {
        "dtype": like.dtype if dtype is None else dtype,
        "device": like.device if device is None else torch.device(device),
    }
    pseudo = pseudo_observations(encoder, observations, config.obs_error_factor, **to)
    z, gen = ldensf_start(surrogate, config, **to)
    diag = torch.zeros(6, observations.shape[0], dtype=torch.float64)
    states, frame = [], -1
    for j, k in enumerate(obs_frames.tolist()):
        forecasts, z, diag[:, j] = ldensf_step(surrogate, z, k - frame, pseudo, j, config, gen)
        states += [forecasts[:-1], z[None]]
        frame = k
    with torch.no_grad():
        states.append(_forecast(surrogate, z, n_frames - 1 - frame))
    z_all, d_s = torch.cat(states), surrogate.latent_dim
    analysed = torch.zeros(n_frames, dtype=torch.bool)
    analysed[obs_frames] = True
    return LDEnSFResult(
        s=z_all[..., :d_s].contiguous(),
        u=z_all[..., d_s:].contiguous(),
        analysed=analysed,
        obs_frames=obs_frames,
        pseudo_obs=pseudo.value,
        pseudo_obs_std=pseudo.std,
        forecast_spread=diag[0],
        analysis_spread=diag[1],
        forecast_misfit=diag[2],
        analysis_misfit=diag[3],
        replaced=diag[4].long(),
        seconds=diag[5],
    )
