"""Latent vector fields ``F(s, u) -> ds/dt`` of LDNet: a residual MLP and impulse-driven
linear dynamics.

Torch only; leading dimensions broadcast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xlevda.errors import ConfigError
from xlevda.surrogates.layers import ResidualMLP, check_last_dim

__all__ = ["ImpulseLinearField", "VectorFieldNet"]


class VectorFieldNet(nn.Module):
    """Latent vector field ``F(s, u) -> ds/dt``: a residual MLP on ``(s, u)``.

    With ``linear=True`` a linear map ``A s + B u`` is added (the MLP's output bias
    is the constant), initialized to zero without drawing random numbers, so the
    initial model is the same as without it: it lets the latent state carry the
    parameters and a clock exactly (e.g. ``B = 1 / dt``, ``A = -1 / dt`` on a
    block: ``s_0 = u``, constant afterwards).

    Parameters
    ----------
    latent_dim, param_dim : int
        ``d_s`` and ``d_u``.
    width, depth : int
        Hidden width and number of hidden layers.
    activation : str
        Activation name.
    linear : bool
        Add the linear term.

    Examples
    --------
    >>> import torch
    >>> F = VectorFieldNet(4, 2, width=8, depth=2, activation="tanh")
    >>> F(torch.zeros(3, 4), torch.zeros(2)).shape
    torch.Size([3, 4])
    """

    def __init__(
        self,
        latent_dim: int,
        param_dim: int,
        width: int,
        depth: int,
        activation: str,
        linear: bool = False,
    ) -> None:
        super().__init__()
        self.net = ResidualMLP(
            (latent_dim, param_dim), latent_dim, width, depth, activation, input_names=("s", "u")
        )
        # zeros, drawn from no generator, so the option leaves every other weight as it was
        self.linear_s = nn.Parameter(torch.zeros(latent_dim, latent_dim)) if linear else None
        self.linear_u = nn.Parameter(torch.zeros(latent_dim, param_dim)) if linear else None

    def forward(self, s: Tensor, u: Tensor) -> Tensor:
        """``s`` (..., d_s), ``u`` (..., d_u), leading dims broadcast -> (..., d_s)."""
        out = self.net(s, u)
        if self.linear_s is not None and self.linear_u is not None:
            out = out + s @ self.linear_s.T + u @ self.linear_u.T
        return out


class ImpulseLinearField(nn.Module):
    """Linear latent dynamics driven by a parameter-dependent impulse.

    ``s = (c, kappa)``; ``F(s, u) = (A c + kappa a + (1 - kappa) g(u), (1 - kappa) / dt)`` with
    ``g(u) = sum_i w_i exp(-|(u - u_i) / l|^2 / 2)``, ``l`` one width or one per parameter (see
    :class:`~xlevda.surrogates.config.LinearDynamicsConfig`).  From ``s_-1 = 0`` one
    Euler step of ``dt`` sets ``kappa = 1`` and ``c_0 = dt g(u)``; afterwards the
    forcing is off and ``c_{k+1} = (I + dt A) c_k + dt a``.  ``A``, ``a`` and the
    weights ``w`` start at zero; :func:`xlevda.surrogates.linear.fit_linear` sets
    them, the centres ``u_i`` and the width ``l``.

    Parameters
    ----------
    latent_dim, param_dim : int
        ``d_s`` (``c`` and the clock) and ``d_u``.
    n_centres : int
        Radial-basis centres.
    dt : float
        The fixed Euler step.
    per_parameter_width : bool
        One kernel width per parameter (an anisotropic kernel) instead of one for all.

    Examples
    --------
    >>> import torch
    >>> F = ImpulseLinearField(4, 2, n_centres=5, dt=0.5)
    >>> F(torch.zeros(3, 4), torch.zeros(2))[:, -1].tolist()   # the clock starts moving
    [2.0, 2.0, 2.0]
    """

    centres: Tensor
    width: Tensor
    step: Tensor

    def __init__(
        self,
        latent_dim: int,
        param_dim: int,
        n_centres: int,
        dt: float,
        per_parameter_width: bool = False,
    ) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ConfigError(f"ImpulseLinearField needs latent_dim >= 2, got {latent_dim}")
        n = latent_dim - 1
        self.A = nn.Parameter(torch.zeros(n, n))
        self.a = nn.Parameter(torch.zeros(n))
        self.weights = nn.Parameter(torch.zeros(n_centres, n))
        self.register_buffer("centres", torch.zeros(n_centres, param_dim))
        width = torch.ones(param_dim) if per_parameter_width else torch.tensor(1.0)
        self.register_buffer("width", width)
        self.register_buffer("step", torch.tensor(float(dt)))
        self.latent_dim, self.param_dim = latent_dim, param_dim

    def impulse(self, u: Tensor) -> Tensor:
        """``g(u)``: (..., d_u) -> (..., d_s - 1)."""
        check_last_dim("u", u, self.param_dim)
        diff = u.unsqueeze(-2) - self.centres
        if self.width.dim():  # one width per parameter
            return torch.exp(-(diff / self.width).square().sum(-1) / 2) @ self.weights
        return torch.exp(-diff.square().sum(-1) / (2 * self.width.square())) @ self.weights

    def forward(self, s: Tensor, u: Tensor) -> Tensor:
        """``s`` (..., d_s), ``u`` (..., d_u), leading dims broadcast -> (..., d_s)."""
        check_last_dim("s", s, self.latent_dim)
        c, clock = s[..., :-1], s[..., -1:]
        gate = 1 - clock
        drift = c @ self.A.T + clock * self.a + gate * self.impulse(u)
        return torch.cat([drift, gate / self.step], -1)
