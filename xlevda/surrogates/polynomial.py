"""Latent dynamics polynomial in the parameters and the state: :class:`PolynomialField`.

Torch only; leading dimensions broadcast.  The field extends
:class:`~xlevda.surrogates.vector_fields.ImpulseLinearField` (which it holds as
``linear``: the impulse that sets the first frame, ``A`` and ``a``) by the terms of
:class:`~xlevda.surrogates.dynamics_configs.PolynomialDynamicsConfig`;
:func:`xlevda.surrogates.opinf.fit_polynomial` fits them.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from xlevda.surrogates.layers import check_last_dim
from xlevda.surrogates.vector_fields import ImpulseLinearField

__all__ = [
    "PolynomialField",
    "monomial_exponents",
    "monomials",
    "pair_products",
    "step_jacobian_radius",
]


def monomial_exponents(param_dim: int, degree: int) -> list[tuple[int, ...]]:
    """The parameter monomials of degree 1 to ``degree``, as tuples of parameter indices
    (``(0, 0, 2)`` is ``u_0^2 u_2``), by degree and then lexicographically.

    Examples
    --------
    >>> monomial_exponents(2, 2)
    [(0,), (1,), (0, 0), (0, 1), (1, 1)]
    """
    return [
        combo
        for d in range(1, degree + 1)
        for combo in itertools.combinations_with_replacement(range(param_dim), d)
    ]


def monomials(u: Tensor, degree: int) -> Tensor:
    """The monomials of :func:`monomial_exponents`: ``u`` (..., d_u) -> (..., n_monomials).

    Examples
    --------
    >>> import torch
    >>> monomials(torch.tensor([2.0, 3.0]), 2).tolist()
    [2.0, 3.0, 4.0, 6.0, 9.0]
    """
    columns = [u[..., list(e)].prod(-1) for e in monomial_exponents(u.shape[-1], degree)]
    return torch.stack(columns, -1) if columns else u[..., :0]


def pair_products(c: Tensor, n_modes: int) -> Tensor:
    """The unique products ``c_i c_j`` (``i <= j < n_modes``, row by row of the upper
    triangle): (..., r) -> (..., n_modes (n_modes + 1) / 2).

    Examples
    --------
    >>> import torch
    >>> pair_products(torch.tensor([2.0, 3.0, 5.0]), 2).tolist()
    [4.0, 6.0, 9.0]
    """
    i, j = torch.triu_indices(n_modes, n_modes, device=c.device)
    return c[..., i] * c[..., j]


class PolynomialField(nn.Module):
    """Impulse-started latent dynamics polynomial in the parameters and the state.

    ``s = (c, kappa)``; ``F(s, u)`` is the :class:`ImpulseLinearField`'s (``A c +
    kappa a + (1 - kappa) g(u)`` and the clock) plus
    ``sum_alpha u^alpha (N_alpha c + kappa b_alpha) + H pair_products(c)`` over the
    monomials ``u^alpha`` of degree 1 to ``param_degree``: from ``s_-1 = 0`` one Euler
    step of ``dt`` sets ``kappa = 1`` and ``c_0 = dt g(u)`` (every other term vanishes
    at ``c = 0, kappa = 0``); afterwards ``c_{k+1} = c_k + dt (A c_k + a + sum_alpha
    u^alpha (N_alpha c_k + b_alpha) + H (c_k (x) c_k))``.
    Every weight starts at zero.

    Parameters
    ----------
    latent_dim, param_dim : int
        ``d_s`` (``c`` and the clock) and ``d_u``.
    n_centres : int
        Radial-basis centres of the impulse.
    dt : float
        The fixed Euler step.
    param_degree : int
        Largest degree of the parameter monomials (0: none).
    quadratic_modes : int
        Leading modes of ``c`` whose products enter ``H`` (0: none).

    Attributes
    ----------
    linear : ImpulseLinearField
        The impulse, ``A`` and ``a``.
    bilinear : Parameter, shape (d_s - 1, n_monomials (d_s - 1))
        ``[N_1, N_2, ...]``: ``N`` acting on the products ``u^alpha c_j`` (``alpha`` major).
    forcing : Parameter, shape (n_monomials, d_s - 1)
        ``b_alpha``.
    quadratic : Parameter, shape (d_s - 1, q (q + 1) / 2)
        ``H``.

    Examples
    --------
    >>> import torch
    >>> F = PolynomialField(4, 2, n_centres=5, dt=0.5, param_degree=2, quadratic_modes=2)
    >>> F(torch.zeros(3, 4), torch.zeros(2))[:, -1].tolist()   # the clock starts moving
    [2.0, 2.0, 2.0]
    >>> F.bilinear.shape, F.quadratic.shape
    (torch.Size([3, 15]), torch.Size([3, 3]))
    """

    def __init__(
        self,
        latent_dim: int,
        param_dim: int,
        n_centres: int,
        dt: float,
        *,
        param_degree: int,
        quadratic_modes: int,
        per_parameter_width: bool = False,
    ) -> None:
        super().__init__()
        self.linear = ImpulseLinearField(latent_dim, param_dim, n_centres, dt, per_parameter_width)
        n = latent_dim - 1
        n_mono = len(monomial_exponents(param_dim, param_degree))
        n_pairs = quadratic_modes * (quadratic_modes + 1) // 2
        self.bilinear = nn.Parameter(torch.zeros(n, n_mono * n))
        self.forcing = nn.Parameter(torch.zeros(n_mono, n))
        self.quadratic = nn.Parameter(torch.zeros(n, n_pairs))
        self.latent_dim, self.param_dim = latent_dim, param_dim
        self.param_degree, self.quadratic_modes = param_degree, quadratic_modes

    @property
    def step(self) -> Tensor:
        """The fixed Euler step ``dt`` (0-d)."""
        return self.linear.step

    def drift(self, c: Tensor, clock: Tensor, u: Tensor) -> Tensor:
        """The polynomial terms beyond the linear field's: ``c`` (..., d_s - 1), ``clock``
        (..., 1), ``u`` (..., d_u) -> (..., d_s - 1)."""
        check_last_dim("u", u, self.param_dim)
        m = monomials(u, self.param_degree)  # (..., n_mono)
        out = (m.unsqueeze(-1) * c.unsqueeze(-2)).flatten(-2) @ self.bilinear.T
        out = out + clock * (m @ self.forcing)
        if self.quadratic_modes:
            out = out + pair_products(c, self.quadratic_modes) @ self.quadratic.T
        return out

    def forward(self, s: Tensor, u: Tensor) -> Tensor:
        """``s`` (..., d_s), ``u`` (..., d_u), leading dims broadcast -> (..., d_s)."""
        base = self.linear(s, u)
        extra = self.drift(s[..., :-1], s[..., -1:], u)
        return torch.cat([base[..., :-1] + extra, base[..., -1:]], -1)


def step_jacobian_radius(field: PolynomialField, c: Tensor, u: Tensor) -> float:
    """Largest spectral radius of the Jacobian ``d c_{k+1} / d c_k`` of the field's step
    after the first frame (clock 1) at the states ``c`` (M, d_s - 1) with parameters ``u``
    (M, d_u).

    Without quadratic terms the step is affine in ``c`` for given parameters, and a
    radius above 1 at some ``u`` means forecasts for that ``u`` grow without bound.

    Examples
    --------
    >>> import torch
    >>> F = PolynomialField(3, 1, n_centres=2, dt=0.5, param_degree=1, quadratic_modes=0)
    >>> with torch.no_grad():
    ...     _ = F.bilinear.copy_(torch.eye(2, 2))  # dc/dt = u c: the step's Jacobian 1 + u / 2
    >>> step_jacobian_radius(F, torch.zeros(2, 2), torch.tensor([[1.0], [-1.0]]))
    1.5
    """

    def step(c_one: Tensor, u_one: Tensor) -> Tensor:
        s = torch.cat([c_one, torch.ones_like(c_one[:1])])
        return c_one + field.step * field(s, u_one)[:-1]

    with torch.no_grad():
        jac = torch.func.vmap(torch.func.jacfwd(step))(c, u)
    return float(torch.linalg.eigvals(jac.double()).abs().max())
