"""Coordinate-based decoders ``D(s, xi)`` of LDNet: neural field, separable field, cosine series.

Torch only.  Every decoder splits decoding into a state-independent part computed
once per point set (:meth:`prepare_points`) and a cheap state-dependent part
(:meth:`decode_prepared`), the split the
:class:`~xlevda.surrogates.protocol.Surrogate` protocol asks for; leading
dimensions broadcast.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from xlevda.core.misfit import weighted_misfit
from xlevda.errors import ShapeError
from xlevda.surrogates.fused import ACTIVATIONS, residual_head, residual_misfit
from xlevda.surrogates.layers import FourierFeatures, ResidualMLP, check_last_dim

__all__ = ["CosineDecoder", "MLPDecoder", "SeparableDecoder"]


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
        check_last_dim("prepared points", prepared, self.width)
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
        check_last_dim("prepared points", prepared, self.width)
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
        check_last_dim("basis", basis, self.n_basis + 1)
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
        self.register_buffer("lo", torch.full((n_coords,), -1.0))
        self.register_buffer("hi", torch.ones(n_coords))
        self.weight = nn.Parameter(torch.zeros(n_channels, latent_dim + 1, n_terms**n_coords))
        self.latent_dim, self.n_coords, self.n_channels = latent_dim, n_coords, n_channels
        self.n_terms = n_terms

    def features(self, points: Tensor) -> Tensor:
        """``points`` (..., P, n_coords) -> cosine products (..., P, n_terms ** n_coords)."""
        check_last_dim("points", points, self.n_coords)
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
        check_last_dim("s", s, self.latent_dim)
        per = self._unflatten(prepared)
        return torch.einsum("...pck,...k->...pc", per[..., :-1], s) + per[..., -1]

    def decode_channel(self, s: Tensor, prepared: Tensor, channel: int) -> Tensor:
        """Channel ``channel`` of :meth:`decode_prepared`: (..., P)."""
        check_last_dim("s", s, self.latent_dim)
        per = self._unflatten(prepared)[..., channel, :]
        return torch.einsum("...pk,...k->...p", per[..., :-1], s) + per[..., -1]

    def forward(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., d_s), ``points`` (..., P, n_coords) -> (..., P, C)."""
        return self.decode_prepared(s, self.prepare_points(points))
