"""Building blocks of the LDNet networks: activations, Fourier features, residual MLPs.

Torch only.  Every block is smooth (tanh, SiLU or GELU activations) because the
assimilation runs L-BFGS through it, and every block broadcasts leading
dimensions so that members, frames and runs are batch dimensions, never loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from xlevda.errors import ConfigError, ShapeError

__all__ = ["FourierFeatures", "ResidualMLP", "activation_fn", "check_last_dim"]

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


def check_last_dim(name: str, x: Tensor, expected: int) -> None:
    """Raise :class:`~xlevda.errors.ShapeError` unless ``x``'s last dimension is ``expected``.

    ``name`` names ``x`` in the message.
    """
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
        check_last_dim("points", x, self.n_in)
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
        check_last_dim(self.input_names[index], x, self.n_in[index])
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
