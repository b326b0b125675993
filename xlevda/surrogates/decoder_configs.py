"""Typed, self-validating configs of the LDNet decoders; each builds its decoder.

Every config is a frozen dataclass that checks its fields in ``__post_init__``
(raising :class:`~xlevda.errors.ConfigError`) and has a ``kind`` that names it in
a saved surrogate (:data:`DECODER_CONFIGS`), and a ``build`` method with one
signature for all, ``build(latent_dim, n_coords, n_channels, *, activation, seed)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xlevda.errors import ConfigError
from xlevda.surrogates.decoders import CosineDecoder, MLPDecoder, SeparableDecoder
from xlevda.validate import check_choice, check_int, check_real

__all__ = [
    "DECODER_CONFIGS",
    "MAX_COSINE_TERMS",
    "CosineDecoderConfig",
    "DecoderConfig",
    "MLPDecoderConfig",
    "SeparableDecoderConfig",
]


MAX_COSINE_TERMS = 32
"""Most cosine terms per coordinate that ``LDNet.fit`` chooses for ``n_terms=None``."""


@dataclass(frozen=True)
class MLPDecoderConfig:
    """The seeds' neural-field decoder: a residual MLP on ``[Fourier(xi), s]``.

    Attributes
    ----------
    width : int
        Hidden width (>= 1).
    depth : int
        Number of hidden layers (>= 1); all but the first are residual.
    n_fourier : int
        Number of random frequencies; the features are ``2 * n_fourier`` sin/cos
        values plus the raw coordinates (>= 1).
    fourier_scale : float
        Standard deviation of the random frequencies, in cycles per unit of the
        normalized coordinates (which span ``[-1, 1]``) (> 0).

    Examples
    --------
    >>> MLPDecoderConfig(width=32, depth=2).kind
    'mlp'
    """

    width: int = 64
    depth: int = 3
    n_fourier: int = 32
    fourier_scale: float = 1.0
    kind: Literal["mlp"] = "mlp"

    def __post_init__(self) -> None:
        check_int("MLPDecoderConfig.width", self.width, 1)
        check_int("MLPDecoderConfig.depth", self.depth, 1)
        check_int("MLPDecoderConfig.n_fourier", self.n_fourier, 1)
        check_real("MLPDecoderConfig.fourier_scale", self.fourier_scale, 0.0, low_open=True)
        check_choice("MLPDecoderConfig.kind", self.kind, ("mlp",))

    def build(
        self, latent_dim: int, n_coords: int, n_channels: int, *, activation: str, seed: int
    ) -> MLPDecoder:
        """The decoder of a model with latent size ``latent_dim``, ``n_coords`` coordinates
        per point and ``n_channels`` outputs, its Fourier frequencies drawn with ``seed``
        (its weights from torch's global generator)."""
        return MLPDecoder(
            latent_dim,
            n_coords,
            n_channels,
            width=self.width,
            depth=self.depth,
            n_fourier=self.n_fourier,
            fourier_scale=self.fourier_scale,
            activation=activation,
            seed=seed,
        )


@dataclass(frozen=True)
class SeparableDecoderConfig:
    """Separable neural field ``D(s, xi) = sum_i c_i(s) psi_i(xi) + b(xi)``.

    The spatial basis ``psi`` (shared by all channels) is a residual MLP on
    Fourier features, evaluated once per point set; the coefficients ``c(s)``
    come from a small residual MLP on the latent state.  ``b(xi)`` is carried by
    the coefficient network's output bias (see
    :class:`~xlevda.surrogates.decoders.SeparableDecoder`).

    Attributes
    ----------
    n_basis : int
        Number of spatial basis functions (>= 1).
    basis_width, basis_depth : int
        Hidden width and number of hidden layers of ``psi`` (>= 1).
    coef_width, coef_depth : int
        Hidden width and number of hidden layers of ``c`` (>= 1).
    n_fourier : int
        Number of random frequencies of ``psi``'s input features (>= 1).
    fourier_scale : float
        Standard deviation of the random frequencies (> 0).

    Examples
    --------
    >>> SeparableDecoderConfig(n_basis=16).kind
    'separable'
    """

    n_basis: int = 32
    basis_width: int = 64
    basis_depth: int = 3
    coef_width: int = 64
    coef_depth: int = 2
    n_fourier: int = 32
    fourier_scale: float = 1.0
    kind: Literal["separable"] = "separable"

    def __post_init__(self) -> None:
        for name in ("n_basis", "basis_width", "basis_depth", "coef_width", "coef_depth"):
            check_int(f"SeparableDecoderConfig.{name}", getattr(self, name), 1)
        check_int("SeparableDecoderConfig.n_fourier", self.n_fourier, 1)
        check_real("SeparableDecoderConfig.fourier_scale", self.fourier_scale, 0.0, low_open=True)
        check_choice("SeparableDecoderConfig.kind", self.kind, ("separable",))

    def build(
        self, latent_dim: int, n_coords: int, n_channels: int, *, activation: str, seed: int
    ) -> SeparableDecoder:
        """The decoder of a model with latent size ``latent_dim``, ``n_coords`` coordinates
        per point and ``n_channels`` outputs, its Fourier frequencies drawn with ``seed``
        (its weights from torch's global generator)."""
        return SeparableDecoder(
            latent_dim,
            n_coords,
            n_channels,
            n_basis=self.n_basis,
            basis_width=self.basis_width,
            basis_depth=self.basis_depth,
            coef_width=self.coef_width,
            coef_depth=self.coef_depth,
            n_fourier=self.n_fourier,
            fourier_scale=self.fourier_scale,
            activation=activation,
            seed=seed,
        )


@dataclass(frozen=True)
class CosineDecoderConfig:
    """Linear decoder ``D(s, xi) = b(xi) + sum_k s_k psi_k(xi)`` on a cosine series.

    Each channel's mean field ``b`` and modes ``psi_k`` are sums of the products
    of ``cos(m pi (xi_j - lo_j) / (hi_j - lo_j))``, ``m < n_terms``, over the
    coordinates ``j``, on the box ``[lo, hi]`` of the training points (a regular
    axis is widened by half a spacing, so that on a cell-centred grid the series
    is the discrete cosine transform).  The decoder is linear in ``s``, smooth and
    defined everywhere, and its size does not grow with the training grid.  It is
    the decoder of the closed-form linear LDNet
    (:class:`~xlevda.surrogates.config.LinearDynamicsConfig`).

    Attributes
    ----------
    n_terms : int or None
        Cosine terms per coordinate (>= 1); ``n_terms ** n_coords`` per mode.  ``None``
        (default): chosen by ``LDNet.fit`` from the training points
        (:func:`xlevda.surrogates.sizing.cosine_terms`: at most :data:`MAX_COSINE_TERMS`
        per coordinate, and as many as the points determine).

    Examples
    --------
    >>> CosineDecoderConfig(n_terms=8).kind
    'cosine'
    """

    n_terms: int | None = None
    kind: Literal["cosine"] = "cosine"

    def __post_init__(self) -> None:
        if self.n_terms is not None:
            check_int("CosineDecoderConfig.n_terms", self.n_terms, 1)
        check_choice("CosineDecoderConfig.kind", self.kind, ("cosine",))

    def build(
        self, latent_dim: int, n_coords: int, n_channels: int, *, activation: str, seed: int
    ) -> CosineDecoder:
        """The decoder of a model with latent size ``latent_dim``, ``n_coords`` coordinates
        per point and ``n_channels`` outputs (zero weights: ``activation`` and ``seed``,
        taken for a signature common to every decoder config, are unused); ``n_terms``
        must be set."""
        if self.n_terms is None:
            raise ConfigError(
                "CosineDecoderConfig.n_terms is None: give the number of cosine terms per "
                "coordinate (LDNet.fit chooses it from the training points)"
            )
        return CosineDecoder(latent_dim, n_coords, n_channels, self.n_terms)


DecoderConfig = MLPDecoderConfig | SeparableDecoderConfig | CosineDecoderConfig
"""Any decoder family."""

DECODER_CONFIGS: dict[str, type[DecoderConfig]] = {
    "mlp": MLPDecoderConfig,
    "separable": SeparableDecoderConfig,
    "cosine": CosineDecoderConfig,
}
"""Decoder config class of each ``kind``."""
