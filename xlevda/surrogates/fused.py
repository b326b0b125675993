"""A frozen residual MLP evaluated in cache-sized tiles: decoded values, and the
observation misfit with its gradient in the same pass.

This is what :class:`~xlevda.surrogates.decoders.MLPDecoder` runs during assimilation
on a CPU, where the weights are fixed and only the gradient with respect to the
latent state is wanted.  It computes the same function as autograd through the
layers, with the same matrix products, in less than half the time
(``benchmarks/mlp_flops.py``):

- **Tiles.** The rows (states times points) go through all layers in tiles of
  ``2**18`` values per layer, in buffers reused from tile to tile, so that the
  elementwise passes run in cache and nothing is allocated per layer.
- **A written-out backward.** Per layer, one activation-backward kernel and one
  in-place ``addmm_`` that also adds the residual path's gradient.
- **The misfit in one pass** (:func:`residual_misfit`).  The weighted squared misfit
  to data is summed per state, and its gradient is computed tile by tile while the
  tile's layers are still in cache.  No hidden layer is ever stored whole, which
  also spares the page faults of allocating them (about 5 ms per 12.8 MB on the
  2-core machine, as much as that layer's matrix product).
- **tanh through sigmoid.** ``tanh(x) = 2 sigmoid(2 x) - 1``, and ATen's float tanh
  on CPU costs almost four times its sigmoid (3.1 against 0.8 ns per value on the
  2-core machine).  The factors 2 and the offsets -1 are folded into the weights
  and biases, so that a layer is one matrix product, one sigmoid and one addition:
  with ``g_l`` the running sum of the sigmoids, ``h_l = 2 g_l - (l + 1)``, and layer
  ``l``'s sigmoid argument is ``4 W_l g_l + 2 b_l - 2 (l + 1) W_l 1``.  SiLU and GELU
  run as they are, keeping their pre-activations for ATen's backward kernels.

The gradient flows to ``state`` only: the weights, the prepared point part, the data
and the weights of the misfit are constants here, and the functions refuse them if
they require grad.  Training differentiates the weights and uses the autograd path.
The backward passes refuse to be differentiated again (``create_graph``).  The folded
tanh agrees with autograd to round-off that grows with depth, as the running sum
``g_l`` carries the offset ``(l + 1) / 2``: relative gradient differences of 2e-6 at
depth 10 in float32, against 2.5e-7 between autograd and float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError

__all__ = ["ACTIVATIONS", "residual_head", "residual_misfit"]

_TILE_VALUES = 2**18
"""Values (rows x width) per tile and layer: 1 MiB in float32."""

_aten = torch.ops.aten


class _Activation(NamedTuple):
    """How a layer runs: ``forward(x, out)``, ``backward(grad, kept, out)``; ``kept`` is
    the layer's output when ``keeps_output`` (tanh through sigmoid), else its input."""

    forward: Callable[[Tensor, Tensor], object]
    backward: Callable[[Tensor, Tensor, Tensor], object]
    keeps_output: bool


_KINDS = {
    "tanh": _Activation(
        lambda x, out: torch.sigmoid(x, out=out),
        lambda g, kept, out: _aten.sigmoid_backward.grad_input(g, kept, grad_input=out),
        True,
    ),
    "silu": _Activation(
        lambda x, out: _aten.silu.out(x, out=out),
        lambda g, kept, out: _aten.silu_backward.grad_input(g, kept, grad_input=out),
        False,
    ),
    "gelu": _Activation(
        lambda x, out: _aten.gelu.out(x, approximate="none", out=out),
        lambda g, kept, out: _aten.gelu_backward.grad_input(
            g, kept, approximate="none", grad_input=out
        ),
        False,
    ),
}

ACTIVATIONS = tuple(_KINDS)
"""Activations the fused path computes: all of
:func:`~xlevda.surrogates.layers.activation_fn`'s."""


class _Net(NamedTuple):
    """The layers as the tiles run them, and the factor on the first pre-activation."""

    hidden: tuple[tuple[Tensor, Tensor], ...]
    out_w: Tensor
    out_b: Tensor
    act: _Activation
    input_scale: float

    @classmethod
    def build(
        cls,
        hidden: Sequence[tuple[Tensor, Tensor]],
        out_weight: Tensor,
        out_bias: Tensor,
        activation: str,
    ) -> _Net:
        """tanh: hidden ``(4 W_l, 2 b_l - 2 (l + 1) W_l 1)``, output ``2 W_o``,
        ``b_o - (H + 1) W_o 1``, input doubled; otherwise the weights as they are."""
        act = _KINDS[activation]
        if not act.keeps_output:
            return cls(tuple((w, b) for w, b in hidden), out_weight, out_bias, act, 1.0)
        with torch.no_grad():
            layers = tuple(
                (4 * w, 2 * b - (2 * (i + 1)) * w.sum(1)) for i, (w, b) in enumerate(hidden)
            )
            out_b = out_bias - (len(hidden) + 1) * out_weight.sum(1)
            return cls(layers, 2 * out_weight, out_b, act, 2.0)


def _tiles(n_lead: int, n_points: int, rows: int) -> Iterator[tuple[int, int, int, int]]:
    """``(b0, b1, p0, p1)``: whole point sets per tile, or slices of one large set."""
    if n_points == 0:
        return
    if n_points <= rows:
        step = max(1, rows // n_points)
        for b0 in range(0, n_lead, step):
            yield b0, min(n_lead, b0 + step), 0, n_points
    else:
        for b in range(n_lead):
            for p0 in range(0, n_points, rows):
                yield b, b + 1, p0, min(n_points, p0 + rows)


def _tile_rows(n_lead: int, n_points: int, rows: int) -> int:
    """Rows of the largest tile of :func:`_tiles`."""
    if n_points <= rows:
        return min(n_lead, max(1, rows // max(n_points, 1))) * n_points
    return rows


class _Buffers:
    """Flat buffers reused by every tile; :meth:`get` views the first ``n x cols``."""

    def __init__(self, like: Tensor, n_rows: int, cols: dict[str, int]) -> None:
        self.bufs = {name: like.new_empty(n_rows * c) for name, c in cols.items()}
        self.cols = cols

    def get(self, name: str, n: int) -> Tensor:
        return self.bufs[name][: n * self.cols[name]].view(n, self.cols[name])


def _first(
    src: Tensor, index: Tensor, x: Tensor, tile: tuple[int, int, int, int], out: Tensor
) -> Tensor:
    """First pre-activation of a tile into ``out`` (n, W): rows ``index[b0:b1]`` of
    ``src`` (B', P, W) at points ``p0:p1``, plus ``x[b0:b1]``."""
    b0, b1, p0, p1 = tile
    view = out.view(b1 - b0, p1 - p0, src.shape[-1])
    torch.index_select(src[:, p0:p1], 0, index[b0:b1], out=view)
    view.add_(x[b0:b1].unsqueeze(1))
    return out


def _gather(src: Tensor, index: Tensor, tile: tuple[int, int, int, int], out: Tensor) -> Tensor:
    """Rows ``index[b0:b1]`` of ``src`` (B', P, C) at points ``p0:p1`` into ``out`` (n, C)."""
    b0, b1, p0, p1 = tile
    torch.index_select(src[:, p0:p1], 0, index[b0:b1], out=out.view(b1 - b0, p1 - p0, -1))
    return out


def _forward_tile(
    net: _Net, pre: Tensor, keep: list[Tensor] | None, bufs: _Buffers, out: Tensor
) -> None:
    """Layers from the first pre-activation ``pre`` (n, W) to ``out`` (n, C).

    ``keep`` (H + 1 views (n, W)) receives what the backward pass needs: the
    sigmoids (tanh), or the pre-activations, of which ``keep[0]`` must be ``pre``
    itself.  Without it, ``pre`` and a buffer are overwritten.
    """
    n = pre.shape[0]
    q, total = bufs.get("q", n), bufs.get("total", n)
    act = net.act
    if act.keeps_output:  # the running sum of sigmoids, see the module docstring
        g = keep[0] if keep else pre
        act.forward(pre, g)
        for i, (w, b) in enumerate(net.hidden):
            torch.addmm(b, g, w.T, out=q)
            sig = keep[i + 1] if keep else q
            act.forward(q, sig)
            if i == 0:
                torch.add(g, sig, out=total)
            else:
                total.add_(sig)
            g = total
    else:
        act.forward(pre, total)
        g = total
        for i, (w, b) in enumerate(net.hidden):
            p = keep[i + 1] if keep else q
            torch.addmm(b, total, w.T, out=p)
            act.forward(p, q)
            total.add_(q)
    torch.addmm(net.out_b, g, net.out_w.T, out=out)


def _backward_tile(net: _Net, grad_y: Tensor, kept: list[Tensor], bufs: _Buffers) -> Tensor:
    """Gradient (n, W) with respect to the first pre-activation, from that of the
    output ``grad_y`` (n, C) and what :func:`_forward_tile` kept."""
    n = grad_y.shape[0]
    grad, step = bufs.get("grad", n), bufs.get("step", n)
    torch.mm(grad_y, net.out_w, out=grad)
    for i in range(len(net.hidden) - 1, -1, -1):
        net.act.backward(grad, kept[i + 1], step)
        grad.addmm_(step, net.hidden[i][0])
    net.act.backward(grad, kept[0], step)
    return step


def _sum_points(values: Tensor, tile: tuple[int, int, int, int], into: Tensor) -> None:
    """``into[b0:b1] += values`` summed over the tile's points."""
    b0, b1, p0, p1 = tile
    into[b0:b1] += values.view(b1 - b0, p1 - p0, -1).sum(1)


class _Head(torch.autograd.Function):
    """``x`` (B, W), ``prep`` (B', P, W) with ``index`` (B,) -> outputs (B, P, C)."""

    @staticmethod
    def forward(ctx, x, prep, index, net, save):  # type: ignore[override]
        n_lead, (_, n_pts, width) = x.shape[0], prep.shape
        rows = max(1, _TILE_VALUES // width)
        bufs = _Buffers(
            x, _tile_rows(n_lead, n_pts, rows), dict.fromkeys(("pre", "q", "total"), width)
        )
        out = x.new_empty(n_lead, n_pts, net.out_w.shape[0])
        n_saved = len(net.hidden) + 1 if save else 0
        saved = [x.new_empty(n_lead, n_pts, width) for _ in range(n_saved)]
        for tile in _tiles(n_lead, n_pts, rows):
            b0, b1, p0, p1 = tile
            n = (b1 - b0) * (p1 - p0)
            keep = [s[b0:b1, p0:p1].view(n, width) for s in saved] if save else None
            slot = keep[0] if keep and not net.act.keeps_output else bufs.get("pre", n)
            pre = _first(prep, index, x, tile, slot)
            _forward_tile(net, pre, keep, bufs, out[b0:b1, p0:p1].view(n, -1))
        if save:
            ctx.save_for_backward(*saved)
        ctx.net, ctx.rows = net, rows
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        _first_order_only()
        saved, net = ctx.saved_tensors, ctx.net
        n_lead, n_pts, width = saved[0].shape
        grad_out = grad_out.contiguous()
        grad_x = grad_out.new_zeros(n_lead, width)
        n_buf = _tile_rows(n_lead, n_pts, ctx.rows)
        bufs = _Buffers(grad_out, n_buf, {"grad": width, "step": width})
        for tile in _tiles(n_lead, n_pts, ctx.rows):
            b0, b1, p0, p1 = tile
            n = (b1 - b0) * (p1 - p0)
            kept = [s[b0:b1, p0:p1].view(n, width) for s in saved]
            step = _backward_tile(net, grad_out[b0:b1, p0:p1].view(n, -1), kept, bufs)
            _sum_points(step, tile, grad_x)
        return grad_x, None, None, None, None


class _Misfit(torch.autograd.Function):
    """``x`` (B, W), ``prep`` (B', P, W), ``data`` and ``sqrt_weight`` (B'', P, C), each
    with its row index (B,) -> weighted squared misfit per row of ``x`` (B,)."""

    @staticmethod
    def forward(ctx, x, prep, index, data, data_index, sqrt_w, w_index, net, grad):  # type: ignore[override]
        n_lead, (_, n_pts, width), n_ch = x.shape[0], prep.shape, data.shape[-1]
        rows = max(1, _TILE_VALUES // width)
        n_keep = len(net.hidden) + 1 if grad else 0
        names = ("pre", "q", "total", "grad", "step") if grad else ("pre", "q", "total")
        cols = dict.fromkeys(names, width)
        cols.update({f"keep{i}": width for i in range(n_keep)})
        cols.update(dict.fromkeys(("y", "data", "sqrt_w"), n_ch))
        bufs = _Buffers(x, _tile_rows(n_lead, n_pts, rows), cols)
        cost = x.new_zeros(n_lead)
        grad_x = x.new_zeros(n_lead, width) if grad else None
        for tile in _tiles(n_lead, n_pts, rows):
            b0, b1, p0, p1 = tile
            n = (b1 - b0) * (p1 - p0)
            keep = [bufs.get(f"keep{i}", n) for i in range(n_keep)] if grad else None
            slot = keep[0] if keep and not net.act.keeps_output else bufs.get("pre", n)
            pre = _first(prep, index, x, tile, slot)
            y = bufs.get("y", n)
            _forward_tile(net, pre, keep, bufs, y)
            weight = _gather(sqrt_w, w_index, tile, bufs.get("sqrt_w", n))
            resid = y.sub_(_gather(data, data_index, tile, bufs.get("data", n))).mul_(weight)
            cost[b0:b1] += resid.square().view(b1 - b0, -1).sum(1)
            if grad_x is not None and keep is not None:  # both set when grad
                step = _backward_tile(net, resid.mul_(weight).mul_(2), keep, bufs)
                _sum_points(step, tile, grad_x)
        ctx.grad_x = grad_x
        return cost

    @staticmethod
    def backward(ctx, grad_cost):  # type: ignore[override]
        _first_order_only()
        return (ctx.grad_x * grad_cost.unsqueeze(-1),) + (None,) * 8


def _first_order_only() -> None:
    """The backward passes run on constants: refuse to be differentiated again."""
    if torch.is_grad_enabled():
        raise RuntimeError(
            "the fused MLP path has first derivatives only (it was asked for a graph of its "
            "gradient, create_graph=True); set MLPDecoder.fused = False for higher derivatives"
        )


def _check(state: Tensor, constants: list[Tensor], activation: str) -> None:
    if activation not in _KINDS:
        raise ConfigError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if torch.is_grad_enabled() and any(t.requires_grad for t in constants):
        raise ConfigError(
            "the fused MLP differentiates with respect to state only; a weight, the prepared "
            "points or the data require grad (use the autograd path to train)"
        )
    for t in constants:
        if t.dtype != state.dtype or t.device != state.device:
            raise ShapeError(
                f"the fused MLP needs one dtype and device: state is {state.dtype} on "
                f"{state.device}, another input {t.dtype} on {t.device}"
            )


def _inputs(
    hidden: Sequence[tuple[Tensor, Tensor]],
    out_weight: Tensor,
    out_bias: Tensor,
    state: Tensor,
    prepared: Tensor,
    per_point: list[Tensor],
    activation: str,
) -> tuple[_Net, Tensor, torch.Size, bool]:
    """Checked network, the scaled state over the broadcast leading dims (B, W), those
    dims, and whether the gradient is wanted."""
    weights = [t for layer in hidden for t in layer] + [out_weight, out_bias]
    _check(state, [*weights, prepared, *per_point], activation)
    lead = torch.broadcast_shapes(
        state.shape[:-1], prepared.shape[:-2], *(t.shape[:-2] for t in per_point)
    )
    net = _Net.build(hidden, out_weight, out_bias, activation)
    x = (net.input_scale * state).expand(*lead, state.shape[-1]).reshape(-1, state.shape[-1])
    grad = torch.is_grad_enabled() and state.requires_grad
    return net, x, lead, grad


def _rows(t: Tensor, n_tail: int, lead: torch.Size) -> tuple[Tensor, Tensor]:
    """``t`` (..., *tail) flattened to (B', *tail) and the row of each entry of ``lead``."""
    t_lead, tail = t.shape[: t.dim() - n_tail], t.shape[t.dim() - n_tail :]
    index = torch.arange(math.prod(t_lead), device=t.device).view(t_lead).expand(lead)
    return t.reshape(math.prod(t_lead), *tail), index.reshape(-1)


def residual_head(
    hidden: Sequence[tuple[Tensor, Tensor]],
    out_weight: Tensor,
    out_bias: Tensor,
    state: Tensor,
    prepared: Tensor,
    activation: str = "tanh",
) -> Tensor:
    """Output of a residual MLP whose first pre-activation is ``prepared + state``.

    ``h_0 = act(prepared + state.unsqueeze(-2))``, ``h_{l+1} = h_l + act(W_l h_l +
    b_l)``, output ``W_o h_H + b_o``: the
    :class:`~xlevda.surrogates.layers.ResidualMLP` head, evaluated as the module
    docstring explains.  With grad enabled and ``state`` requiring it, what the
    backward pass needs of every layer is kept (as autograd would keep it); the
    gradient flows to ``state`` alone.

    Parameters
    ----------
    hidden : sequence of (Tensor, Tensor)
        Hidden layers' weights (W, W) and biases (W,).
    out_weight, out_bias : Tensor
        Output layer, (C, W) and (C,).
    state : Tensor, shape (..., W)
        State-dependent part of the first pre-activation.
    prepared : Tensor, shape (..., P, W)
        Point part of the first pre-activation; leading dims broadcast with ``state``'s.
    activation : {"tanh", "silu", "gelu"}

    Returns
    -------
    Tensor, shape (..., P, C)

    Raises
    ------
    ConfigError
        If grad is enabled and a weight or ``prepared`` requires grad (that gradient
        would be missing), or for another activation.
    ShapeError
        If dtypes or devices differ.
    RuntimeError
        From the backward pass, if asked for second derivatives (``create_graph``).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> w, b = torch.randn(8, 8, generator=g), torch.randn(8, generator=g)
    >>> wo, bo = torch.randn(3, 8, generator=g), torch.zeros(3)
    >>> s, pts = torch.randn(4, 8, generator=g), torch.randn(5, 8, generator=g)
    >>> h = torch.tanh(pts + s.unsqueeze(-2))
    >>> ref = (h + torch.tanh(h @ w.T + b)) @ wo.T + bo
    >>> torch.allclose(residual_head([(w, b)], wo, bo, s, pts), ref, atol=1e-5)
    True
    """
    net, x, lead, grad = _inputs(hidden, out_weight, out_bias, state, prepared, [], activation)
    with torch.no_grad():
        prep, index = _rows(net.input_scale * prepared, 2, lead)
    out = _Head.apply(x, prep, index, net, grad)
    return out.view(*lead, prepared.shape[-2], out_weight.shape[0])


def residual_misfit(
    hidden: Sequence[tuple[Tensor, Tensor]],
    out_weight: Tensor,
    out_bias: Tensor,
    state: Tensor,
    prepared: Tensor,
    data: Tensor,
    sqrt_weight: Tensor,
    activation: str = "tanh",
) -> Tensor:
    """:func:`~xlevda.core.misfit.weighted_misfit` of :func:`residual_head` to ``data``, fused.

    With grad enabled and ``state`` requiring it, the gradient is computed in the
    same pass, tile by tile, and no layer is stored whole.

    Parameters
    ----------
    hidden, out_weight, out_bias, state, prepared, activation
        As for :func:`residual_head`.
    data, sqrt_weight : Tensor, shape (..., P, C)
        Data and square-root weights; their dims broadcast with the others' (P and
        C too).

    Returns
    -------
    Tensor, shape (...,)

    Raises
    ------
    ConfigError, ShapeError
        As :func:`residual_head`, also for data or weights requiring grad
        (ConfigError), or a channel count other than 1 or the network's (ShapeError).

    Examples
    --------
    >>> import torch
    >>> out_w, out_b = torch.ones(1, 2), torch.zeros(1)  # no hidden layer: sum of tanh
    >>> state, points = torch.zeros(1, 2), torch.zeros(3, 2)
    >>> data, sqrt_weight = torch.ones(3, 1), torch.full((3, 1), 2.0)
    >>> residual_misfit([], out_w, out_b, state, points, data, sqrt_weight)
    tensor([12.])
    """
    per_point = [data, sqrt_weight]
    net, x, lead, grad = _inputs(
        hidden, out_weight, out_bias, state, prepared, per_point, activation
    )
    n_ch = out_weight.shape[0]
    if data.shape[-1] not in (1, n_ch) or sqrt_weight.shape[-1] not in (1, n_ch):
        raise ShapeError(
            f"data {tuple(data.shape)} and sqrt_weight {tuple(sqrt_weight.shape)} must have "
            f"1 or {n_ch} channels (the network's outputs)"
        )
    n_pts = torch.broadcast_shapes(
        prepared.shape[-2:-1], data.shape[-2:-1], sqrt_weight.shape[-2:-1]
    )[0]
    with torch.no_grad():
        scaled = net.input_scale * prepared
        prep, index = _rows(scaled.expand(*prepared.shape[:-2], n_pts, -1), 2, lead)
        dat, data_index = _rows(data.expand(*data.shape[:-2], n_pts, n_ch), 2, lead)
        sw, w_index = _rows(sqrt_weight.expand(*sqrt_weight.shape[:-2], n_pts, n_ch), 2, lead)
    cost = _Misfit.apply(x, prep, index, dat, data_index, sw, w_index, net, grad)
    return cost.view(lead)
