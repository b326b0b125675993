"""Sizes of the closed-form LDNet chosen from the archive: cosine terms and latent modes.

Torch only.  ``LDNet.fit`` calls :func:`choose_sizes` when the config leaves
``CosineDecoderConfig.n_terms`` or ``LDNetConfig.latent_dim`` ``None`` (the default
config leaves both): the cosine series gets as many terms per coordinate as the
training points determine (at most
:data:`~xlevda.surrogates.decoder_configs.MAX_COSINE_TERMS`, and within a memory
a memory bound), and the latent state as many proper orthogonal modes as the training frames
need for a relative projection error of ``mode_tolerance`` (at most ``max_modes``).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.compression import fit_box, moments, run_points
from xlevda.surrogates.config import LDNetConfig
from xlevda.surrogates.decoder_configs import MAX_COSINE_TERMS, CosineDecoderConfig
from xlevda.surrogates.decoders import CosineDecoder
from xlevda.surrogates.dynamics_configs import ClosedFormDynamicsConfig
from xlevda.surrogates.frames import FrameSource

__all__ = ["choose_sizes", "cosine_terms", "modes_for"]

MAX_COMPRESSED = 4096
"""Most compressed coordinates (channels x cosine products): the Gram matrix's side."""

MAX_FEATURE_BYTES = 2**29
"""Most bytes of the cosine products at the training points (float64)."""


def cosine_terms(points: Tensor, n_channels: int) -> int:
    """The cosine terms per coordinate for ``points`` (P, n_coords) and ``n_channels``.

    At most :data:`~xlevda.surrogates.decoder_configs.MAX_COSINE_TERMS`; at most the
    distinct values of any coordinate (on a grid the series is then its discrete cosine
    transform); ``n_channels`` times the products at most :data:`MAX_COMPRESSED`; the
    products at the points (float64) at most :data:`MAX_FEATURE_BYTES`; and reduced by a
    fifth at a time until the products are independent at the points (scattered points).

    Parameters
    ----------
    points : Tensor, shape (P, n_coords)
    n_channels : int

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        Fewer than 2 terms per coordinate are independent at the points.

    Examples
    --------
    >>> import torch
    >>> g = torch.linspace(-1, 1, 12)
    >>> grid = torch.cartesian_prod(g, torch.linspace(-1, 1, 40))
    >>> cosine_terms(grid, 1)
    12
    """
    n_points, n_coords = points.shape
    distinct = min(int(torch.unique(points[:, j]).numel()) for j in range(n_coords))
    products = min(MAX_COMPRESSED // n_channels, MAX_FEATURE_BYTES // (8 * n_points))
    n_terms = min(MAX_COSINE_TERMS, distinct, int(products ** (1 / n_coords) + 1e-9))
    while n_terms >= 2:
        try:
            fit_box(CosineDecoder(1, n_coords, n_channels, n_terms), points)
            return n_terms
        except ConfigError:
            n_terms = min(n_terms - 1, int(n_terms * 0.8))
    raise ConfigError(
        f"the {n_points} training points determine fewer than 2 cosine terms per coordinate "
        "(the default closed-form LDNet's decoder): give a neural decoder for gradient "
        "training, e.g. LDNetConfig(decoder=MLPDecoderConfig())"
    )


def modes_for(gram: Tensor, total: Tensor, count: int, tolerance: float, most: int) -> int:
    """The fewest proper orthogonal modes whose projection leaves at most ``tolerance``
    relative error in the centred frames, capped at ``most`` (>= 1).

    ``gram`` (n, n) is the sum of ``w w^T`` and ``total`` (n,) the sum of ``w`` over
    ``count`` frames ``w``.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 0.1, 0.0], [0.0, -0.1, 0.0]])
    >>> modes_for(w.T @ w, w.sum(0), 3, 0.1, 10), modes_for(w.T @ w, w.sum(0), 3, 1e-3, 10)
    (1, 2)
    """
    mean = total / count
    energy = torch.linalg.eigvalsh(gram - count * torch.outer(mean, mean)).flip(0).clamp_min(0)
    tail = energy.sum() - energy.cumsum(0)  # left out by the leading k + 1 modes
    enough = tail <= tolerance**2 * energy.sum()
    first = int(torch.nonzero(enough)[0, 0]) + 1 if bool(enough.any()) else len(energy)
    return max(1, min(first, most))


def choose_sizes(
    config: LDNetConfig, train_src: FrameSource, geometry: str = "plane"
) -> tuple[LDNetConfig, dict[str, int]]:
    """``config`` with the sizes it leaves ``None`` chosen from the training runs, and
    what was chosen (for the fit's report).

    A :class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` without
    ``n_terms`` gets :func:`cosine_terms` of the training points; with closed-form
    dynamics and no ``latent_dim``, it is one plus :func:`modes_for` of the training
    frames in the cosine coordinates (``mode_tolerance``; at most ``max_modes`` and
    what the frames span; one pass over the training runs).

    Raises
    ------
    ConfigError
        ``geometry`` is ``"sphere"`` (a global latitude-longitude grid) and ``n_terms``
        is ``None``: a cosine series on the box of the points embedded in 3-D is no
        basis for fields on the sphere (measured on the sphere system, 32x64: relative
        errors 0.3-5), so the default is refused there with the options to choose.
    """
    dyn, dec = config.dynamics, config.decoder
    sized_terms = isinstance(dec, CosineDecoderConfig) and dec.n_terms is None
    sized_modes = isinstance(dyn, ClosedFormDynamicsConfig) and config.latent_dim is None
    if not (sized_terms or sized_modes):
        return config, {}
    if sized_terms and geometry == "sphere":
        raise ConfigError(
            "the default closed-form LDNet's cosine decoder does not suit a global "
            "latitude-longitude grid (a series on the box of the points embedded in 3-D; "
            "measured on the sphere system: relative errors 0.3-5): choose a gradient-"
            "trained LDNet, e.g. LDNetConfig(decoder=SeparableDecoderConfig()) (the shipped "
            "sphere surrogate's kind), or give CosineDecoderConfig(n_terms=...) to fit "
            "the closed form anyway"
        )
    points, n_channels = run_points(train_src)
    if points.dim() != 2:
        raise ShapeError(
            f"the cosine decoder needs points (P, n_coords), got {tuple(points.shape)}"
        )
    assert isinstance(dec, CosineDecoderConfig)
    chosen: dict[str, int] = {}
    n_terms = dec.n_terms
    if n_terms is None:
        n_terms = chosen["n_terms"] = cosine_terms(points, n_channels)
        config = replace(config, decoder=replace(dec, n_terms=n_terms))
    if sized_modes:
        assert isinstance(dyn, ClosedFormDynamicsConfig)
        q, _ = fit_box(CosineDecoder(1, points.shape[1], n_channels, n_terms), points)
        m = moments(q, train_src, points)
        most = min(dyn.max_modes, m.count - 1, n_channels * q.shape[1])
        n_modes = modes_for(m.gram, m.total, m.count, dyn.mode_tolerance, most)
        config = replace(config, latent_dim=n_modes + 1)
        chosen["latent_dim"] = n_modes + 1
    return config, chosen
