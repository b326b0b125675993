"""Typed, self-validating configs of the closed-form latent dynamics of an LDNet.

Both dynamics start every run from ``s_-1 = 0`` with an impulse that sets the first
frame's latent state ``c_0(u)`` by Gaussian kernel ridge regression over the
parameters (:class:`ClosedFormDynamicsConfig` holds its options), and are fitted
without gradient descent with the
:class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` decoder:

- :class:`LinearDynamicsConfig`: ``c_{k+1} = M c_k + m`` (dynamic mode
  decomposition, :func:`xlevda.surrogates.linear.fit_linear`);
- :class:`PolynomialDynamicsConfig`: a step polynomial in the parameters and the
  latent state (operator inference, :func:`xlevda.surrogates.opinf.fit_polynomial`).

Each has a ``kind`` that names it in a saved surrogate (:data:`DYNAMICS_CONFIGS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from xlevda.errors import ConfigError
from xlevda.surrogates.polynomial import PolynomialField
from xlevda.surrogates.vector_fields import ImpulseLinearField
from xlevda.validate import check_choice, check_int, check_real

__all__ = [
    "DYNAMICS_CONFIGS",
    "WIDTH_SCALES",
    "ClosedFormDynamicsConfig",
    "DynamicsConfig",
    "LinearDynamicsConfig",
    "PolynomialDynamicsConfig",
]


WIDTH_SCALES = (0.25, 0.5, 2.0, 4.0, 16.0)
"""Factors tried on each parameter's kernel width with ``kernel="per_parameter"``."""


def _grid(name: str, values: object, low_open: bool) -> tuple[float, ...]:
    """``values`` as a non-empty tuple of finite numbers >= 0 (> 0 with ``low_open``)."""
    grid = tuple(values) if isinstance(values, list | tuple) else None
    if not grid:
        raise ConfigError(f"{name} must be a non-empty tuple, got {values!r}")
    for v in grid:
        check_real(f"{name}[...]", v, 0.0, low_open=low_open)
    return grid


@dataclass(frozen=True)
class ClosedFormDynamicsConfig:
    """What the closed-form dynamics share: the first frame's kernel ridge regression.

    Attributes
    ----------
    n_centres : int or None
        Radial-basis centres (>= 1), one per fitted run's parameters; ``LDNet.fit``
        sets it to the number of fitted runs when ``None``.
    ridge : float
        Ridge added to the kernel matrix's diagonal (which is 1) in the fit (>= 0).
    widths : tuple of float
        Kernel widths tried by the fit, as multiples of the median distance from a
        training run's parameters to its nearest neighbour; the one with the lowest
        validation error on the first frame is kept.
    kernel : {"per_parameter", "isotropic"}
        ``"per_parameter"`` (default): after the common width, each parameter's width
        is scaled by the factor of :data:`WIDTH_SCALES` with the lowest validation
        error, parameter by parameter, twice over (a parameter the first frame does
        not depend on gets a wide kernel); ``"isotropic"``: one width for all (files
        written before the option).  Parameters are in normalized units.
    refit : bool
        After choosing the hyperparameters on the validation runs, fit every part
        again on the training and validation runs together (the validation runs then
        choose only the hyperparameters).
    mode_tolerance : float
        With ``LDNetConfig.latent_dim=None`` (the default), ``LDNet.fit`` keeps the
        fewest proper orthogonal modes of the training frames whose projection leaves a
        relative error of at most ``mode_tolerance`` (in (0, 1)) in the centred frames,
        and at most ``max_modes``; ``latent_dim`` is their number plus one (the clock)
        (:func:`xlevda.surrogates.sizing.choose_sizes`).
    max_modes : int
        The most modes so chosen (>= 1).

    Examples
    --------
    >>> ClosedFormDynamicsConfig().widths[0]
    0.5
    """

    n_centres: int | None = None
    ridge: float = 1e-6
    widths: tuple[float, ...] = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0)
    refit: bool = True
    kernel: Literal["per_parameter", "isotropic"] = "per_parameter"
    mode_tolerance: float = 0.005
    max_modes: int = 128

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_real(
            f"{name}.mode_tolerance", self.mode_tolerance, 0.0, 1.0, low_open=True, high_open=True
        )
        check_int(f"{name}.max_modes", self.max_modes, 1)
        if self.n_centres is not None:
            check_int(f"{name}.n_centres", self.n_centres, 1)
        check_real(f"{name}.ridge", self.ridge, 0.0)
        object.__setattr__(self, "widths", _grid(f"{name}.widths", self.widths, True))
        check_choice(f"{name}.kernel", self.kernel, ("per_parameter", "isotropic"))
        if not isinstance(self.refit, bool):
            raise ConfigError(f"{name}.refit must be a bool, got {self.refit!r}")

    def _centres(self) -> int:
        """``n_centres``, which must be set to build the vector field."""
        if self.n_centres is None:
            raise ConfigError(
                f"{type(self).__name__}.n_centres is None: give the number of centres "
                "(LDNet.fit sets it to the number of fitted runs: training runs, plus "
                "validation runs with refit=True)"
            )
        return self.n_centres


@dataclass(frozen=True)
class LinearDynamicsConfig(ClosedFormDynamicsConfig):
    """Linear latent dynamics driven by a parameter-dependent impulse.

    The latent state is ``s = (c, kappa)`` with ``c`` of size ``latent_dim - 1`` and
    a clock ``kappa``; the vector field is

    ``F(s, u) = (A c + kappa a + (1 - kappa) g(u), (1 - kappa) / dt)``,

    ``g(u) = sum_i w_i exp(-|u - u_i|^2 / (2 l^2))`` a Gaussian radial-basis network
    on ``n_centres`` centres.  From the shifted start ``s_-1 = 0`` the first Euler
    step gives ``kappa = 1`` and ``c_0 = dt g(u)``; after it the forcing is off and
    ``c_{k+1} = (I + dt A) c_k + dt a``: a linear time-invariant system whose
    initial state depends nonlinearly on the parameters.  This suits systems that are linear in
    their state for given parameters (the tsunami's shallow water), and is fitted in
    closed form (:func:`xlevda.surrogates.linear.fit_linear`) with the
    :class:`~xlevda.surrogates.decoder_configs.CosineDecoderConfig` decoder: proper
    orthogonal decomposition for the decoder, least squares for ``A`` (dynamic mode
    decomposition), kernel ridge regression for ``g``.  ``dt`` is fixed (``learnable_dt=False``).
    The fields are those of :class:`ClosedFormDynamicsConfig`.

    Examples
    --------
    >>> LinearDynamicsConfig().kind
    'linear'
    """

    kind: Literal["linear"] = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("LinearDynamicsConfig.kind", self.kind, ("linear",))

    def build(self, latent_dim: int, param_dim: int, dt: float) -> ImpulseLinearField:
        """The vector field (zero weights) of a model with latent size ``latent_dim``,
        ``param_dim`` parameters and Euler step ``dt``; ``n_centres`` must be set."""
        per_parameter = self.kernel == "per_parameter"
        return ImpulseLinearField(latent_dim, param_dim, self._centres(), dt, per_parameter)


@dataclass(frozen=True)
class PolynomialDynamicsConfig(ClosedFormDynamicsConfig):
    """Latent dynamics polynomial in the parameters and the state, fitted in closed form.

    As :class:`LinearDynamicsConfig` (state ``s = (c, kappa)``, the first frame ``c_0(u)``
    by kernel ridge regression), but after the first frame

    ``c_{k+1} = c_k + dt (sum_alpha u^alpha (A_alpha c_k + b_alpha) + H (c_k (x) c_k))``

    over the monomials ``u^alpha`` of the parameters of degree at most ``param_degree``
    (``alpha = 0``: the linear ``A c + a``; degree 1: the bilinear ``N (u (x) c) + B u``,
    exact for advection and diffusion with parametric coefficients in the span of the
    modes; degree 2 also follows the parameter dependence of one step of such a flow),
    and ``H`` on the unique products ``c_i c_j`` (``i <= j``) of the leading
    ``quadratic_modes`` modes (the form of incompressible flow and shallow water).
    Every coefficient is fitted by ridge (Tikhonov) least squares on all consecutive
    frames (operator inference, :func:`xlevda.surrogates.opinf.fit_polynomial`); the
    three ridge weights, for the linear model's terms (``A``, ``a``), the parameter
    terms (``N_alpha``, ``b_alpha``) and ``H``, each relative to the mean diagonal of
    its block of the normal matrix, are chosen on the validation runs' rollouts over
    all their frames (a large weight switches a group off: the linear model is a
    special case).

    Attributes
    ----------
    param_degree : int
        Largest degree of the parameter monomials (>= 0; 0 gives the linear model's form).
    quadratic_modes : int
        Leading modes whose products enter ``H`` (>= 0; 0: no quadratic term); at most
        ``latent_dim - 1``.
    regularization : tuple of float
        Ridge weights (>= 0) tried for ``A`` and ``a``.
    param_regularization : tuple of float
        Ridge weights (>= 0) tried for ``N_alpha`` and ``b_alpha`` (unused with
        ``param_degree=0``).
    quadratic_regularization : tuple of float
        Ridge weights (>= 0) tried for ``H`` (unused without quadratic terms).

    Examples
    --------
    >>> cfg = PolynomialDynamicsConfig(quadratic_modes=8)
    >>> cfg.kind, cfg.param_degree
    ('polynomial', 2)
    """

    param_degree: int = 2
    quadratic_modes: int = 0
    regularization: tuple[float, ...] = (1e-10, 1e-8, 1e-6, 1e-4)
    param_regularization: tuple[float, ...] = (1e-8, 1e-6, 1e-4, 1e-2, 1.0)
    quadratic_regularization: tuple[float, ...] = (1e-4, 1e-2, 1.0)
    kind: Literal["polynomial"] = "polynomial"

    def __post_init__(self) -> None:
        super().__post_init__()
        name = "PolynomialDynamicsConfig"
        check_int(f"{name}.param_degree", self.param_degree, 0)
        check_int(f"{name}.quadratic_modes", self.quadratic_modes, 0)
        for field in ("regularization", "param_regularization", "quadratic_regularization"):
            grid = _grid(f"{name}.{field}", getattr(self, field), False)
            object.__setattr__(self, field, grid)
        check_choice(f"{name}.kind", self.kind, ("polynomial",))

    def build(self, latent_dim: int, param_dim: int, dt: float) -> PolynomialField:
        """The vector field (zero weights) of a model with latent size ``latent_dim``,
        ``param_dim`` parameters and Euler step ``dt``; ``n_centres`` must be set."""
        if self.quadratic_modes > latent_dim - 1:
            raise ConfigError(
                f"PolynomialDynamicsConfig.quadratic_modes must be at most latent_dim - 1 = "
                f"{latent_dim - 1} (the modes), got {self.quadratic_modes}"
            )
        return PolynomialField(
            latent_dim,
            param_dim,
            self._centres(),
            dt,
            param_degree=self.param_degree,
            quadratic_modes=self.quadratic_modes,
            per_parameter_width=self.kernel == "per_parameter",
        )


DynamicsConfig = LinearDynamicsConfig | PolynomialDynamicsConfig
"""Any closed-form latent dynamics."""

DYNAMICS_CONFIGS: dict[str, type[DynamicsConfig]] = {
    "linear": LinearDynamicsConfig,
    "polynomial": PolynomialDynamicsConfig,
}
"""Dynamics config class of each ``kind``."""
