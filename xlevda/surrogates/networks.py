"""Building blocks of LDNet: Fourier features, residual MLPs, vector field, decoders.

Torch only.  Every block is smooth (tanh, SiLU or GELU activations) because the
assimilation runs L-BFGS through it, and every block broadcasts leading
dimensions so that members, frames and runs are batch dimensions, never loops.

Both decoders split decoding into a state-independent part computed once per
point set (:meth:`prepare_points`) and a cheap state-dependent part
(:meth:`decode_prepared`), the split the
:class:`~xlevda.surrogates.protocol.Surrogate` protocol asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from xlevda.core.misfit import weighted_misfit
from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.fused import ACTIVATIONS, residual_head, residual_misfit

__all__ = [
    "CosineDecoder",
    "FourierFeatures",
    "ImpulseLinearField",
    "MLPDecoder",
    "ResidualMLP",
    "SeparableDecoder",
    "VectorFieldNet",
    "activation_fn",
]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "silu": nn.functional.silu,
    "gelu": nn.functional.gelu,
}


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The smooth activation called ``name`` (``"tanh"``, ``"silu"`` or ``"gelu"``).

    Examples
    --------
    >>> import torch
    >>> activation_fn("tanh")(torch.zeros(1)).item()
    0.0
    """
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ConfigError(
            f"activation must be one of {tuple(_ACTIVATIONS)}, got {name!r}"
        ) from None


def _check_last_dim(name: str, x: Tensor, expected: int) -> None:
    if x.dim() == 0 or x.shape[-1] != expected:
        raise ShapeError(f"{name} must have last dimension {expected}, got shape {tuple(x.shape)}")


class FourierFeatures(nn.Module):
    """Random Fourier features ``[sin(2 pi xi B), cos(2 pi xi B)(, xi)]`` of coordinates.

    ``B`` of shape ``(n_in, n_features)`` is drawn once from ``N(0, scale^2)`` with
    its own seeded generator and kept as a (saved, untrained) buffer.

    Parameters
    ----------
    n_in : int
        Number of coordinates (normalized to ``[-1, 1]``).
    n_features : int
        Number of random frequencies.
    scale : float
        Standard deviation of the frequencies (cycles per unit coordinate).
    seed : int
        Seed of ``B``.
    include_input : bool
        Append the raw coordinates to the features.

    Examples
    --------
    >>> import torch
    >>> ff = FourierFeatures(2, 8, scale=1.0, seed=0)
    >>> ff(torch.zeros(5, 2)).shape
    torch.Size([5, 18])
    """

    B: Tensor

    def __init__(
        self, n_in: int, n_features: int, scale: float, seed: int, include_input: bool = True
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", scale * torch.randn(n_in, n_features, generator=gen))
        self.n_in = n_in
        self.include_input = include_input
        self.n_out = 2 * n_features + (n_in if include_input else 0)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` (..., n_in) -> features (..., n_out)."""
        _check_last_dim("points", x, self.n_in)
        proj = (2 * math.pi) * (x @ self.B)
        parts = [torch.sin(proj), torch.cos(proj)]
        if self.include_input:
            parts.append(x)
        return torch.cat(parts, dim=-1)


class ResidualMLP(nn.Module):
    """MLP with residual hidden layers, taking one or several broadcast inputs.

    ``h_1 = act(sum_j W_j x_j + b)``, ``h_{l+1} = h_l + act(W_l h_l + b_l)``,
    output ``W_out h_depth + b_out``.  Several inputs are equivalent to one
    concatenated input, but their leading dimensions broadcast and each input's
    projection can be computed separately (:meth:`project`), e.g. once per point
    set.  Weights are Glorot-normal, biases zero.

    Parameters
    ----------
    n_in : int or sequence of int
        Size of the (each) input.
    n_out : int
        Output size.
    width : int
        Hidden width.
    depth : int
        Number of hidden layers (>= 1).
    activation : str
        ``"tanh"``, ``"silu"`` or ``"gelu"``.
    input_names : sequence of str, optional
        Names of the inputs in shape errors (default ``"input 0"``, ...).

    Examples
    --------
    >>> import torch
    >>> net = ResidualMLP((3, 2), 4, width=8, depth=2, activation="tanh")
    >>> net(torch.zeros(5, 3), torch.zeros(2)).shape
    torch.Size([5, 4])
    """

    def __init__(
        self,
        n_in: int | Sequence[int],
        n_out: int,
        width: int,
        depth: int,
        activation: str,
        input_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        sizes = (n_in,) if isinstance(n_in, int) else tuple(n_in)
        names = tuple(input_names) if input_names is not None else None
        if names is None or len(names) != len(sizes):
            names = tuple(f"input {j}" for j in range(len(sizes)))
        if depth < 1:
            raise ConfigError(f"ResidualMLP depth must be >= 1, got {depth}")
        self.act = activation_fn(activation)
        self.activation = activation
        self.n_in = sizes
        self.input_names = names
        self.inputs = nn.ModuleList(nn.Linear(n, width, bias=(j == 0)) for j, n in enumerate(sizes))
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 1))
        self.output = nn.Linear(width, n_out)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def project(self, index: int, x: Tensor) -> Tensor:
        """First-layer contribution of input ``index``: (..., n_in[index]) -> (..., width).

        Input 0 carries the first layer's bias.
        """
        _check_last_dim(self.input_names[index], x, self.n_in[index])
        return self.inputs[index](x)

    def features(self, pre: Tensor) -> Tensor:
        """Last hidden layer (..., width) from the summed first-layer pre-activation."""
        h = self.act(pre)
        for layer in self.hidden:
            h = h + self.act(layer(h))
        return h

    def head(self, pre: Tensor) -> Tensor:
        """Rest of the network from the summed first-layer pre-activation (..., width)."""
        return self.output(self.features(pre))

    def forward(self, *xs: Tensor) -> Tensor:
        """Inputs ``x_j`` (..., n_in[j]) with broadcastable leading dims -> (..., n_out)."""
        if len(xs) != len(self.n_in):
            raise ShapeError(f"ResidualMLP takes {len(self.n_in)} inputs, got {len(xs)}")
        pre = self.project(0, xs[0])
        for j in range(1, len(xs)):
            pre = pre + self.project(j, xs[j])
        return self.head(pre)


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


class MLPDecoder(nn.Module):
    """Neural-field decoder ``D(s, xi)``: residual MLP on ``[Fourier(xi), s]`` -> C channels.

    :meth:`prepare_points` returns the points' first-layer projection
    ``W_xi Fourier(xi) + b`` of shape (..., P, width); :meth:`decode_prepared`
    adds the state's projection ``W_s s`` and runs the remaining layers.  This is
    the concatenated network exactly, without materializing the concatenation,
    and the point part is computed once per point set instead of once per state.

    With frozen weights on a CPU (assimilation), :meth:`decode_prepared` and
    :meth:`misfit_prepared` run :mod:`~xlevda.surrogates.fused`: the same function
    and matrix products in less than half the time.  Setting the attribute ``fused = False``
    keeps autograd through the layers (a reference for tests and benchmarks).

    Parameters
    ----------
    latent_dim : int
        ``d_s``.
    n_coords : int
        Coordinates per query point.
    n_channels : int
        Output channels ``C``.
    width, depth : int
        Hidden width and number of hidden layers.
    n_fourier : int
        Number of Fourier frequencies.
    fourier_scale : float
        Standard deviation of the frequencies.
    activation : str
        Activation name.
    seed : int
        Seed of the Fourier frequencies.

    Examples
    --------
    >>> import torch
    >>> dec = MLPDecoder(4, 2, 3, width=8, depth=2, n_fourier=4, fourier_scale=1.0,
    ...                  activation="tanh", seed=0)
    >>> dec(torch.zeros(6, 4), torch.zeros(10, 2)).shape
    torch.Size([6, 10, 3])
    """

    def __init__(
        self,
        latent_dim: int,
        n_coords: int,
        n_channels: int,
        *,
        width: int,
        depth: int,
        n_fourier: int,
        fourier_scale: float,
        activation: str,
        seed: int,
    ) -> None:
        super().__init__()
        self.fourier = FourierFeatures(n_coords, n_fourier, fourier_scale, seed)
        self.net = ResidualMLP(
            (self.fourier.n_out, latent_dim),
            n_channels,
            width,
            depth,
            activation,
            input_names=("Fourier features", "s"),
        )
        self.width = width
        self.fused = True

    def prepare_points(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> first-layer point projection (..., P, width)."""
        return self.net.project(0, self.fourier(points))

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., d_s), ``prepared`` (..., P, width), leading dims broadcast -> (..., P, C)."""
        _check_last_dim("prepared points", prepared, self.width)
        state = self.net.project(1, s)
        if self._fusable(state, prepared):
            return residual_head(*self._layers(), state, prepared, self.net.activation)
        return self.net.head(prepared + state.unsqueeze(-2))

    def misfit_prepared(
        self, s: Tensor, prepared: Tensor, data: Tensor, sqrt_weight: Tensor
    ) -> Tensor:
        """:func:`~xlevda.core.misfit.weighted_misfit` of :meth:`decode_prepared`
        to ``data`` (..., P, C) -> (...,), in one fused pass where :meth:`decode_prepared`
        is fused and ``data`` and ``sqrt_weight`` are constants."""
        _check_last_dim("prepared points", prepared, self.width)
        state = self.net.project(1, s)
        channels = torch.broadcast_shapes(data.shape[-1:], sqrt_weight.shape[-1:])
        if channels[0] in (1, self.net.output.out_features) and self._fusable(
            state, prepared, data, sqrt_weight
        ):
            return residual_misfit(
                *self._layers(), state, prepared, data, sqrt_weight, self.net.activation
            )
        return weighted_misfit(self.net.head(prepared + state.unsqueeze(-2)), data, sqrt_weight)

    def _layers(self) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor]:
        hidden = [(layer.weight, layer.bias) for layer in self.net.hidden]
        return hidden, self.net.output.weight, self.net.output.bias

    def _fusable(self, state: Tensor, *inputs: Tensor) -> bool:
        """Whether :mod:`~xlevda.surrogates.fused` computes this: ``fused`` set, on a
        CPU, in float32 or float64 (the folded tanh loses more bits in half precision),
        with the weights and the other ``inputs`` constant and of ``state``'s dtype, and
        outside ``torch.func`` transforms and forward-mode AD, which the written-out
        backward does not support."""
        if not (self.fused and self.net.activation in ACTIVATIONS and state.device.type == "cpu"):
            return False
        if state.dtype not in (torch.float32, torch.float64):
            return False
        if any(t.dtype != state.dtype or t.device != state.device for t in inputs):
            return False
        weights = [*self.net.hidden.parameters(), *self.net.output.parameters()]
        wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
        if wrapped is None or any(wrapped(t) for t in (state, *inputs, *weights)):
            return False
        if any(forward_ad.unpack_dual(t).tangent is not None for t in (state, *inputs, *weights)):
            return False
        constant = [*inputs, *weights]
        return not (torch.is_grad_enabled() and any(t.requires_grad for t in constant))

    def decode_channel(self, s: Tensor, prepared: Tensor, channel: int) -> Tensor:
        """Channel ``channel`` of :meth:`decode_prepared`: (..., P).  The hidden layers,
        where the work is, serve all channels, so this costs as much as all of them."""
        return self.decode_prepared(s, prepared)[..., channel]

    def forward(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., d_s), ``points`` (..., P, n_coords) -> (..., P, C)."""
        return self.decode_prepared(s, self.prepare_points(points))


class SeparableDecoder(nn.Module):
    """Separable neural field ``D(s, xi) = sum_i c_i(s) psi_i(xi) + b(xi)``.

    The basis ``psi`` (shared by all channels) is a residual MLP on Fourier
    features of ``xi``; :meth:`basis_points` returns
    ``Psi = [psi(xi) / sqrt(n_basis), 1]`` of shape (..., P, n_basis + 1).  The
    coefficient network maps ``s`` to a matrix ``(n_basis + 1, C)``; its last layer
    is linear, ``c(s) = W h(s) + beta`` with ``h`` its last hidden layer (width
    ``H``), so ``D = h(s) . (Psi W) + Psi beta``.  Where that halves the work
    (:meth:`folds`: few points per set, e.g. the observations of one time),
    :meth:`prepare_points` folds the basis into that layer once per point set,
    ``[Psi W, Psi beta]`` of shape (..., P, C (H + 1)), and :meth:`decode_prepared`
    is one batched matmul of ``[h(s), 1]`` with it: ``P C (H + 1)`` per state
    instead of the ``(n_basis + 1) C (H + P)`` of forming the coefficients first.
    Otherwise (e.g. a whole output grid, where folding would only add memory) the
    prepared points are the basis itself, ``Psi`` (..., P, n_basis + 1), and the
    coefficients are formed.  Either way the cost per state is independent of the
    basis network's size.  :meth:`forward` (training, where the weights change
    every step) forms the coefficients; all paths are the same function.

    The state-independent field ``b(xi)`` is the coefficient network's output
    bias ``beta`` (n_basis + 1, C): ``b_c(xi) = sum_i beta_ic psi_i(xi) + beta_0c``,
    a learned per-channel mean field in the span of the basis.

    Parameters
    ----------
    latent_dim : int
        ``d_s``.
    n_coords : int
        Coordinates per query point.
    n_channels : int
        Output channels ``C``.
    n_basis : int
        Number of basis functions.
    basis_width, basis_depth : int
        Size of ``psi``.
    coef_width, coef_depth : int
        Size of ``c``.
    n_fourier : int
        Number of Fourier frequencies of ``psi``.
    fourier_scale : float
        Standard deviation of the frequencies.
    activation : str
        Activation name.
    seed : int
        Seed of the Fourier frequencies.

    Examples
    --------
    >>> import torch
    >>> dec = SeparableDecoder(4, 2, 3, n_basis=5, basis_width=8, basis_depth=2,
    ...                        coef_width=8, coef_depth=1, n_fourier=4, fourier_scale=1.0,
    ...                        activation="tanh", seed=0)
    >>> dec.prepare_points(torch.zeros(10, 2)).shape   # the basis: folding would not pay
    torch.Size([10, 6])
    >>> dec(torch.zeros(6, 4), torch.zeros(10, 2)).shape
    torch.Size([6, 10, 3])
    """

    def __init__(
        self,
        latent_dim: int,
        n_coords: int,
        n_channels: int,
        *,
        n_basis: int,
        basis_width: int,
        basis_depth: int,
        coef_width: int,
        coef_depth: int,
        n_fourier: int,
        fourier_scale: float,
        activation: str,
        seed: int,
    ) -> None:
        super().__init__()
        self.fourier = FourierFeatures(n_coords, n_fourier, fourier_scale, seed)
        self.basis = ResidualMLP(
            self.fourier.n_out,
            n_basis,
            basis_width,
            basis_depth,
            activation,
            input_names=("Fourier features",),
        )
        self.coef = ResidualMLP(
            latent_dim,
            (n_basis + 1) * n_channels,
            coef_width,
            coef_depth,
            activation,
            input_names=("s",),
        )
        self.n_basis = n_basis
        self.n_channels = n_channels
        self.coef_width = coef_width

    def basis_points(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> basis with bias column (..., P, n_basis + 1)."""
        psi = self.basis(self.fourier(points)) / math.sqrt(self.n_basis)
        return torch.cat([psi, torch.ones_like(psi[..., :1])], dim=-1)

    def decode_basis(self, s: Tensor, basis: Tensor) -> Tensor:
        """``s`` (..., d_s), ``basis`` (..., P, n_basis + 1), dims broadcast -> (..., P, C)."""
        _check_last_dim("basis", basis, self.n_basis + 1)
        coef = self.coef(s).unflatten(-1, (self.n_basis + 1, self.n_channels))
        # einsum folds the dimensions along which the basis is shared (size 1 or
        # absent) into the matmul's columns instead of copying the basis per state.
        return torch.einsum("...pk,...kc->...pc", basis, coef)

    def folds(self, n_points: int) -> bool:
        """Whether :meth:`prepare_points` folds a set of ``n_points`` points: where the
        folded product costs at most half of forming the coefficients, and the two
        forms differ in size (so that :meth:`decode_prepared` can tell them apart).

        Examples
        --------
        >>> dec = SeparableDecoder(4, 2, 3, n_basis=32, basis_width=8, basis_depth=1,
        ...                        coef_width=16, coef_depth=1, n_fourier=4,
        ...                        fourier_scale=1.0, activation="tanh", seed=0)
        >>> dec.folds(100), dec.folds(10_000)
        (True, False)
        """
        h, k = self.coef_width + 1, self.n_basis + 1
        distinct = k != self.n_channels * h
        return distinct and 2 * n_points * h <= k * (self.coef_width + n_points)

    def prepare_points(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> ``[Psi W, Psi beta]`` (..., P, C (H + 1)) where
        :meth:`folds` (P), else the basis ``Psi`` (..., P, n_basis + 1)."""
        basis = self.basis_points(points)
        if not self.folds(points.shape[-2]):
            return basis
        shape = (self.n_basis + 1, self.n_channels)
        weight = self.coef.output.weight.unflatten(0, shape)  # (n_basis + 1, C, H)
        bias = self.coef.output.bias.unflatten(0, shape).unsqueeze(-1)  # (n_basis + 1, C, 1)
        folded = torch.einsum("...pk,kcj->...pcj", basis, torch.cat([weight, bias], -1))
        return folded.flatten(-2)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., d_s), ``prepared`` from :meth:`prepare_points`, dims broadcast ->
        (..., P, C)."""
        folded, k = self.n_channels * (self.coef_width + 1), self.n_basis + 1
        if prepared.shape[-1] not in (folded, k):
            raise ShapeError(
                f"prepared points must have last dimension {k} (the basis) or {folded} (the "
                f"folded basis), got shape {tuple(prepared.shape)}"
            )
        if prepared.shape[-1] == k:
            return self.decode_basis(s, prepared)
        h = self.coef.features(self.coef.project(0, s))
        h = torch.cat([h, torch.ones_like(h[..., :1])], -1)
        folded = prepared.unflatten(-1, (self.n_channels, self.coef_width + 1))
        return torch.einsum("...j,...pcj->...pc", h, folded)

    def decode_channel(self, s: Tensor, prepared: Tensor, channel: int) -> Tensor:
        """Channel ``channel`` of :meth:`decode_prepared`: (..., P).

        With the unfolded basis (output grids) only that channel's coefficients meet
        the basis: a ``C``-th of the product that dominates decoding a large grid.
        """
        if prepared.shape[-1] != self.n_basis + 1:
            return self.decode_prepared(s, prepared)[..., channel]
        coef = self.coef(s).unflatten(-1, (self.n_basis + 1, self.n_channels))[..., channel]
        return torch.einsum("...pk,...k->...p", prepared, coef)

    def forward(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., d_s), ``points`` (..., P, n_coords) -> (..., P, C)."""
        return self.decode_basis(s, self.basis_points(points))


class ImpulseLinearField(nn.Module):
    """Linear latent dynamics driven by a parameter-dependent impulse.

    ``s = (c, kappa)``; ``F(s, u) = (A c + kappa a + (1 - kappa) g(u), (1 - kappa) / dt)`` with
    ``g(u) = sum_i w_i exp(-|u - u_i|^2 / (2 l^2))`` (see
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

    def __init__(self, latent_dim: int, param_dim: int, n_centres: int, dt: float) -> None:
        super().__init__()
        if latent_dim < 2:
            raise ConfigError(f"ImpulseLinearField needs latent_dim >= 2, got {latent_dim}")
        n = latent_dim - 1
        self.A = nn.Parameter(torch.zeros(n, n))
        self.a = nn.Parameter(torch.zeros(n))
        self.weights = nn.Parameter(torch.zeros(n_centres, n))
        self.register_buffer("centres", torch.zeros(n_centres, param_dim))
        self.register_buffer("width", torch.tensor(1.0))
        self.register_buffer("step", torch.tensor(float(dt)))
        self.latent_dim, self.param_dim = latent_dim, param_dim

    def impulse(self, u: Tensor) -> Tensor:
        """``g(u)``: (..., d_u) -> (..., d_s - 1)."""
        _check_last_dim("u", u, self.param_dim)
        d2 = (u.unsqueeze(-2) - self.centres).square().sum(-1)
        return torch.exp(-d2 / (2 * self.width.square())) @ self.weights

    def forward(self, s: Tensor, u: Tensor) -> Tensor:
        """``s`` (..., d_s), ``u`` (..., d_u), leading dims broadcast -> (..., d_s)."""
        _check_last_dim("s", s, self.latent_dim)
        c, clock = s[..., :-1], s[..., -1:]
        gate = 1 - clock
        drift = c @ self.A.T + clock * self.a + gate * self.impulse(u)
        return torch.cat([drift, gate / self.step], -1)


class CosineDecoder(nn.Module):
    """Linear decoder ``D(s, xi) = b(xi) + sum_k s_k psi_k(xi)`` on a cosine series.

    Each channel's mean field and modes are combinations of the ``T = n_terms **
    n_coords`` products ``prod_j cos(m_j pi (xi_j - lo_j) / (hi_j - lo_j))``
    (:meth:`features`, coordinate 0 slowest); ``weight`` of shape (C, d_s + 1, T)
    holds them, the mean field last.  :meth:`prepare_points` contracts the features
    with ``weight`` once per point set, (..., P, C (d_s + 1)); decoding a state is
    then one product with ``(s, 1)``.  The box ``[lo, hi]`` and the weights are set
    by :func:`xlevda.surrogates.linear.fit_linear` (weights start at zero).

    Parameters
    ----------
    latent_dim : int
        ``d_s``.
    n_coords : int
        Coordinates per query point.
    n_channels : int
        Output channels ``C``.
    n_terms : int
        Cosine terms per coordinate.

    Examples
    --------
    >>> import torch
    >>> dec = CosineDecoder(3, 2, 2, n_terms=4)
    >>> dec.features(torch.zeros(5, 2)).shape
    torch.Size([5, 16])
    >>> dec(torch.zeros(6, 3), torch.zeros(5, 2)).shape
    torch.Size([6, 5, 2])
    """

    lo: Tensor
    hi: Tensor

    def __init__(self, latent_dim: int, n_coords: int, n_channels: int, n_terms: int) -> None:
        super().__init__()
        self.register_buffer("lo", -torch.ones(n_coords))
        self.register_buffer("hi", torch.ones(n_coords))
        self.weight = nn.Parameter(torch.zeros(n_channels, latent_dim + 1, n_terms**n_coords))
        self.latent_dim, self.n_coords, self.n_channels = latent_dim, n_coords, n_channels
        self.n_terms = n_terms

    def features(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> cosine products (..., P, n_terms ** n_coords)."""
        _check_last_dim("points", points, self.n_coords)
        phase = (points - self.lo) / (self.hi - self.lo)
        m = torch.arange(self.n_terms, dtype=points.dtype, device=points.device)
        cos = torch.cos(math.pi * phase.unsqueeze(-1) * m)  # (..., P, n_coords, T1)
        out = cos[..., 0, :]
        for j in range(1, self.n_coords):
            out = (out.unsqueeze(-1) * cos[..., j, :].unsqueeze(-2)).flatten(-2)
        return out

    def prepare_points(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> (..., P, C (d_s + 1))."""
        prepared = torch.einsum("...pf,ckf->...pck", self.features(points), self.weight)
        return prepared.flatten(-2)

    def _unflatten(self, prepared: Tensor) -> Tensor:
        n = self.n_channels * (self.latent_dim + 1)
        if prepared.dim() == 0 or prepared.shape[-1] != n:
            raise ShapeError(
                f"prepared points must have last dimension C (d_s + 1) = {n}, got shape "
                f"{tuple(prepared.shape)}"
            )
        return prepared.unflatten(-1, (self.n_channels, self.latent_dim + 1))

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., d_s), ``prepared`` (..., P, C (d_s + 1)), dims broadcast -> (..., P, C)."""
        _check_last_dim("s", s, self.latent_dim)
        per = self._unflatten(prepared)
        return torch.einsum("...pck,...k->...pc", per[..., :-1], s) + per[..., -1]

    def decode_channel(self, s: Tensor, prepared: Tensor, channel: int) -> Tensor:
        """Channel ``channel`` of :meth:`decode_prepared`: (..., P)."""
        _check_last_dim("s", s, self.latent_dim)
        per = self._unflatten(prepared)[..., channel, :]
        return torch.einsum("...pk,...k->...p", per[..., :-1], s) + per[..., -1]

    def forward(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., d_s), ``points`` (..., P, n_coords) -> (..., P, C)."""
        return self.decode_prepared(s, self.prepare_points(points))
