"""Batched strong-Wolfe line search of :func:`~xlevda.core.lbfgs.lbfgs` (cubic interpolation)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xlevda.core.optim import BatchedObjective, LBFGSConfig, finite_rows, value_and_grad

__all__ = ["cubic_min", "strong_wolfe"]


def cubic_min(t1: Tensor, f1: Tensor, d1: Tensor, t2: Tensor, f2: Tensor, d2: Tensor) -> Tensor:
    """Minimizer of the cubic through two points with slopes; NaN where none exists.

    ``t1, t2`` the points, ``f1, f2`` the values and ``d1, d2`` the slopes there, all
    of one shape; returns that shape.
    """
    e1 = d1 + d2 - 3 * (f1 - f2) / (t1 - t2)
    disc = e1 * e1 - d1 * d2
    e2 = torch.sign(t2 - t1) * disc.clamp_min(0).sqrt()
    t = t2 - (t2 - t1) * (d2 + e2 - e1) / (d2 - d1 + 2 * e2)
    return torch.where(disc >= 0, t, torch.full_like(t, math.nan))


def strong_wolfe(
    fun: BatchedObjective,
    x: Tensor,
    f: Tensor,
    g: Tensor,
    d: Tensor,
    t0: Tensor,
    members: Tensor,
    cfg: LBFGSConfig,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Strong-Wolfe line search for ``M`` members at once (bracketing, then cubic zoom).

    Returns the accepted mask (M,), new points (M, n), costs (M,), gradients (M, n)
    and the number of batched evaluations.  A member that finds no Wolfe point
    takes its best point satisfying sufficient decrease, if it has one.  A member stops
    searching once its bracket is narrower than the dtype resolves: when
    ``width * max|d|`` is at most ``eps * max|x + a d|`` (``a`` the bracket's lower end),
    the points left to try differ from the bracket's ends by round-off only, and
    evaluating them only repeats values (without the stop such members used every one
    of ``line_search_max`` trials).
    """
    slope0 = (g * d).sum(-1)
    t = t0.clone()
    lo_t, lo_f, lo_d = torch.zeros_like(f), f.clone(), slope0.clone()
    lo_g = g.clone()
    hi_t, hi_f, hi_d = torch.full_like(f, math.inf), torch.full_like(f, math.nan), slope0.clone()
    done = torch.zeros_like(f, dtype=torch.bool)
    stalled = torch.zeros_like(done)
    eps = torch.finfo(f.dtype).eps
    d_max = d.abs().amax(-1)
    x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
    evals = 0
    for _ in range(cfg.line_search_max):
        live = (~done & ~stalled).nonzero().squeeze(-1)
        if live.numel() == 0:
            break
        tl = t[live]
        xt = x[live] + tl.unsqueeze(-1) * d[live]
        ft, gt = value_and_grad(fun, xt, members[live])
        evals += 1
        dt = (gt * d[live]).sum(-1)
        f0, s0 = f[live], slope0[live]
        # sufficient decrease up to the round-off of f (approximate Wolfe, Hager-Zhang):
        # where f is flat to round-off the slope conditions alone decide
        armijo = ft <= f0 + cfg.c1 * tl * s0 + 2 * eps * f0.abs()
        high = ~finite_rows(ft, gt) | ~armijo | ((ft >= lo_f[live]) & (lo_t[live] > 0))
        wolfe = ~high & (dt.abs() <= -cfg.c2 * s0)
        flip = ~high & ~wolfe & (dt * (hi_t[live] - lo_t[live]) >= 0)
        up = ~high & ~wolfe

        acc = live[wolfe]
        x_new[acc], f_new[acc], g_new[acc] = xt[wolfe], ft[wolfe], gt[wolfe]
        done[acc] = True

        # high: t becomes the upper end of the bracket
        hl = live[high]
        hi_t[hl], hi_f[hl], hi_d[hl] = tl[high], ft[high], dt[high]
        # a low point whose slope points back at lo: old lo becomes the upper end
        fl = live[flip]
        hi_t[fl], hi_f[fl], hi_d[fl] = lo_t[fl], lo_f[fl], lo_d[fl]
        # remember the previous low point for extrapolation, then move lo to t
        ul = live[up]
        prev_t, prev_f, prev_d = lo_t[ul], lo_f[ul], lo_d[ul]
        lo_t[ul], lo_f[ul], lo_d[ul], lo_g[ul] = tl[up], ft[up], dt[up], gt[up]

        # next trial step for the members still searching
        bracketed = torch.isfinite(hi_t[live])
        a, b = torch.minimum(lo_t[live], hi_t[live]), torch.maximum(lo_t[live], hi_t[live])
        width = b - a
        interp = cubic_min(lo_t[live], lo_f[live], lo_d[live], hi_t[live], hi_f[live], hi_d[live])
        interp = torch.where(torch.isfinite(interp), interp, (a + b) / 2)
        zoom = torch.minimum(torch.maximum(interp, a + 0.1 * width), b - 0.1 * width)
        extra = torch.full_like(tl, math.nan)
        extra[up] = cubic_min(prev_t, prev_f, prev_d, tl[up], ft[up], dt[up])
        extra = torch.where(torch.isfinite(extra), extra, 4 * tl)
        extra = torch.minimum(torch.maximum(extra, 2 * tl), 10 * tl)
        t[live] = torch.where(bracketed, zoom, extra)
        # the bracket's points differ by round-off only: their largest entry resolves no more
        reach = (x[live] + a.unsqueeze(-1) * d[live]).abs().amax(-1)
        stalled[live] = bracketed & (width * d_max[live] <= eps * reach)
    fallback = ~done & (lo_t > 0)
    x_new[fallback] = x[fallback] + lo_t[fallback].unsqueeze(-1) * d[fallback]
    f_new[fallback], g_new[fallback] = lo_f[fallback], lo_g[fallback]
    return done | fallback, x_new, f_new, g_new, evals
