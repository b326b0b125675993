"""Training the LD-EnSF observation encoder, and the histories and targets it learns from.

Torch only.  :func:`fit_encoder` trains an
:class:`~xlevda.surrogates.encoder.ObservationEncoder` on observation histories
of runs against the surrogate's own latent states (:func:`latent_targets`);
:func:`surrogate_histories` simulates such histories with the surrogate alone,
from parameters drawn by :func:`~xlevda.core.prior.prior_params`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from xlevda.core.prior import prior_params
from xlevda.errors import ConfigError, ObservationError, ShapeError, VariableError
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder
from xlevda.surrogates.fingerprint import SurrogateFingerprint, latent_rollout
from xlevda.surrogates.history import EncoderHistory
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.protocol import Surrogate
from xlevda.validate import check_int

__all__ = ["fit_encoder", "latent_targets", "surrogate_histories"]


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
    check_int("n_obs", n_obs, 1)
    frames = network.frames(n_obs).to(params.device)
    with torch.no_grad():
        s = latent_rollout(surrogate, params, int(frames[-1]) + 1).index_select(-2, frames)
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
    check_int("n_runs", n_runs, 1)
    check_int("seed", seed, 0)
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
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.ldnet import LDNetModel
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> schema = SurrogateSchema.minimal(5)
    >>> model = LDNetModel(LDNetConfig(latent_dim=2, decoder=MLPDecoderConfig()), schema)
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
    noise = _Noise((config.noise_ratio * channel_std).repeat(network.n_points), gen)  # (P * C,)
    x_val = noise(x_val)
    start = time.perf_counter()
    history = _train_epochs(encoder, (x_train, z_train), (x_val, z_val), noise, progress)
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


class _Noise:
    """Adds fresh Gaussian noise of std ``std`` (P * C,) drawn from ``generator``."""

    def __init__(self, std: Tensor, generator: torch.Generator) -> None:
        self.std, self.generator = std, generator

    def __call__(self, x: Tensor) -> Tensor:
        draw = torch.randn(x.shape, generator=self.generator, dtype=self.std.dtype)
        return x + self.std * draw.to(self.std.device)


def _train_epochs(
    encoder: ObservationEncoder,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    noise: _Noise,
    progress: bool,
) -> EncoderHistory:
    """Adam over ``encoder.config.epochs`` epochs on noisy ``train`` inputs, cosine-annealed;
    restores the weights of the lowest loss on ``val`` (inputs and targets)."""
    config, (x_train, z_train), (x_val, z_val) = encoder.config, train, val
    like = encoder.in_mean

    def loss_of(x: Tensor, z: Tensor) -> Tensor:
        return ((encoder(x) - z) / encoder.out_std).square().mean()

    optimizer = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    history = EncoderHistory()
    best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    best = math.inf
    n_train = x_train.shape[0]
    bar = tqdm(total=config.epochs, desc="encoder", unit="epoch", disable=not progress)
    for epoch in range(config.epochs):
        progress_frac = epoch / max(config.epochs - 1, 1)
        lo = config.lr * config.lr_min_factor
        for group in optimizer.param_groups:
            group["lr"] = lo + 0.5 * (config.lr - lo) * (1 + math.cos(math.pi * progress_frac))
        encoder.train()
        order = torch.randperm(n_train, generator=noise.generator).to(like.device)
        total = 0.0
        for chunk in order.split(config.batch_size):
            loss = loss_of(noise(x_train[chunk]), z_train[chunk])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(encoder.parameters(), config.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(chunk)
        encoder.eval()
        with torch.no_grad():
            val_loss = float(loss_of(x_val, z_val))
        history.train_loss.append(total / n_train)
        history.val_loss.append(val_loss)
        if val_loss < best:
            best, history.best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        bar.set_postfix(
            {"train": f"{total / n_train:.3e}", "val": f"{val_loss:.3e}"}, refresh=False
        )
        bar.update(1)
    bar.close()
    encoder.load_state_dict(best_state)
    return history
