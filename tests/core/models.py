"""Tiny surrogates satisfying the Surrogate protocol, for the core tests (torch only)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor

from xlevda.core.dynamics import observe
from xlevda.core.window import ObsWindow

F64 = torch.float64


def features(points: Tensor) -> Tensor:
    """``[1, x, y, x y, x^2]`` of 2-D points: (..., P, 2) -> (..., P, 5)."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([torch.ones_like(x), x, y, x * y, x * x], -1)


class LinearSurrogate:
    """``s' = A s + B u``, ``u' = G u`` (``G`` via :meth:`tendency`), decoder affine in ``s``.

    ``decode(s, xi)[c] = sum_f phi_f(xi) (M[f, c] . s + b[f, c])`` with the features
    ``phi`` of :func:`features`.
    """

    def __init__(self, d_s: int, d_u: int, n_ch: int, seed: int = 0, dt: float = 0.1):
        g = torch.Generator().manual_seed(seed)
        self.latent_dim, self.param_dim = d_s, d_u
        self.schema = SimpleNamespace(n_coords=2, n_channels=n_ch)
        self._dt = torch.tensor(dt, dtype=F64)
        self.A = 0.5 * torch.randn(d_s, d_s, generator=g, dtype=F64)
        self.B = torch.randn(d_s, d_u, generator=g, dtype=F64)
        self.G = 0.3 * torch.randn(d_u, d_u, generator=g, dtype=F64)
        self.M = torch.randn(5, n_ch, d_s, generator=g, dtype=F64)
        self.b = torch.randn(5, n_ch, generator=g, dtype=F64)

    @property
    def dt(self) -> Tensor:
        return self._dt

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        return s @ self.A.T + u @ self.B.T

    def tendency(self, u: Tensor) -> Tensor:
        return u @ self.G.T

    def prepare_points(self, points: Tensor) -> Tensor:
        return features(points)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        f, c, d = self.M.shape
        coef = (s @ self.M.reshape(f * c, d).T).unflatten(-1, (f, c)) + self.b
        return prepared @ coef

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        return self.decode_prepared(s, self.prepare_points(points))

    def obs_matrix(self, window: ObsWindow, tendency: bool) -> tuple[Tensor, Tensor]:
        """``(G_z, h_0)`` with observations ``G_z z + h_0`` (m, d_z), (m,), built from the
        matrices alone (no rollout code); rows in ``(time, point, channel)`` order."""
        d_s, d_u = self.latent_dim, self.param_dim
        dt = float(self.dt)
        gu = self.G if tendency else torch.zeros(d_u, d_u, dtype=F64)
        phi = torch.zeros(d_s + d_u, d_s + d_u, dtype=F64)
        phi[:d_s, :d_s] = torch.eye(d_s, dtype=F64) + dt * self.A
        phi[:d_s, d_s:] = dt * self.B
        phi[d_s:, d_s:] = torch.eye(d_u, dtype=F64) + dt * gu
        rows, consts = [], []
        for k, a, pts in zip(
            window.step.tolist(), window.frac.tolist(), window.points, strict=True
        ):
            interp = torch.cat([torch.eye(d_s, dtype=F64) + a * dt * self.A, a * dt * self.B], 1)
            to_s = interp @ torch.linalg.matrix_power(phi, k)  # (d_s, d_z)
            feats = features(pts.to(F64))  # (P, F)
            w = torch.einsum("pf,fcd->pcd", feats, self.M)  # (P, C, d_s)
            rows.append((w @ to_s).reshape(-1, d_s + d_u))
            consts.append((feats @ self.b).reshape(-1))
        return torch.cat(rows), torch.cat(consts)


class MLPSurrogate:
    """Nonlinear: tanh-MLP vector field and a tanh decoder on ``[phi(xi), s]``."""

    def __init__(
        self, d_s: int, d_u: int, n_ch: int, width: int = 16, seed: int = 0, scale: float = 1.0
    ):
        g = torch.Generator().manual_seed(seed)

        def w(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=g, dtype=F64) / shape[-1] ** 0.5

        self.latent_dim, self.param_dim = d_s, d_u
        self.schema = SimpleNamespace(n_coords=2, n_channels=n_ch)
        self._dt = torch.tensor(0.2, dtype=F64)
        self.f1, self.f2 = w(width, d_s + d_u), scale * w(d_s, width)
        self.d1, self.d1s, self.d2 = w(width, 5), w(width, d_s), w(n_ch, width)

    @property
    def dt(self) -> Tensor:
        return self._dt

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        return torch.tanh(torch.cat([s, u], -1) @ self.f1.T) @ self.f2.T - 0.1 * s

    def prepare_points(self, points: Tensor) -> Tensor:
        return features(points) @ self.d1.T

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        h = torch.tanh(prepared + (s @ self.d1s.T).unsqueeze(-2))
        return h @ self.d2.T

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        return self.decode_prepared(s, self.prepare_points(points))


class Bump:
    """A Gaussian bump of width ``width`` at ``x = s`` (``d_s = 1``, no parameters, ``s' = 0``).

    The misfit of a bump observed at many points is non-convex in its position: far
    from the observed bump the gradient vanishes.
    """

    latent_dim, param_dim = 1, 0
    schema = SimpleNamespace(n_coords=2, n_channels=1)

    def __init__(self, width: float = 0.25):
        self.width = width

    @property
    def dt(self) -> Tensor:
        return torch.tensor(1.0, dtype=F64)

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        return torch.zeros_like(s)

    def prepare_points(self, points: Tensor) -> Tensor:
        return points[..., :1]

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        return torch.exp(-0.5 * ((prepared - s.unsqueeze(-2)) / self.width) ** 2)


class NaNAbove:
    """Wraps a surrogate; the vector field is NaN where ``s[0] > threshold``."""

    def __init__(self, inner, threshold: float):
        self.inner, self.threshold = inner, threshold
        self.latent_dim, self.param_dim = inner.latent_dim, inner.param_dim
        self.schema = inner.schema

    @property
    def dt(self) -> Tensor:
        return self.inner.dt

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        out = self.inner.vector_field(s, u)
        bad = (s[..., :1] > self.threshold).expand_as(out)
        return torch.where(bad, torch.full_like(out, torch.nan), out)

    def prepare_points(self, points: Tensor) -> Tensor:
        return self.inner.prepare_points(points)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        return self.inner.decode_prepared(s, prepared)


def random_window(
    n_ch: int,
    steps: tuple[int, ...] = (0, 1, 3),
    fracs: tuple[float, ...] = (0.0, 0.4, 0.7),
    n_points: int = 5,
    seed: int = 1,
    std: float = 0.5,
    missing: float = 0.2,
) -> ObsWindow:
    """Random points, values and per-value errors; about ``missing`` of the values padded."""
    g = torch.Generator().manual_seed(seed)
    t_o = len(steps)
    points = 2 * torch.rand(t_o, n_points, 2, generator=g, dtype=F64) - 1
    values = torch.randn(t_o, n_points, n_ch, generator=g, dtype=F64)
    sd = std * (0.5 + torch.rand(t_o, n_points, n_ch, generator=g, dtype=F64))
    keep = torch.rand(t_o, n_points, n_ch, generator=g, dtype=F64) >= missing
    weight = torch.where(keep, 1 / sd**2, torch.zeros_like(sd))
    values = torch.where(keep, values, torch.full_like(values, torch.nan))
    return ObsWindow(
        step=torch.tensor(steps),
        frac=torch.tensor(fracs, dtype=F64),
        points=points,
        values=values,
        weight=weight,
    )


def random_ensemble(K: int, d_z: int, seed: int = 2, spread: float = 0.5) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(d_z, generator=g, dtype=F64)
    return centre + spread * torch.randn(K, d_z, generator=g, dtype=F64)


def nonlinear_problem(K: int = 8, seed: int = 2):
    """Tanh-MLP surrogate; data = decoded truth (the ensemble's centre) + noise at the window's
    per-value errors; a fifth of the values missing."""
    sur = MLPSurrogate(d_s=4, d_u=1, n_ch=2, seed=3)
    layout = random_window(2, steps=(0, 1, 2), fracs=(0.0, 0.5, 0.25), n_points=6, seed=7)
    z_b = random_ensemble(K + 1, 5, seed=seed, spread=0.4)
    prepared = sur.prepare_points(layout.points)
    clean = observe(sur, z_b.mean(0, keepdim=True), layout, prepared)[0]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    values = clean + noise / layout.weight.clamp_min(1e-12).sqrt()
    values = torch.where(layout.weight > 0, values, torch.nan)
    window = ObsWindow(layout.step, layout.frac, layout.points, values, layout.weight)
    return sur, window, z_b[:K]


def torch_lbfgs_member(objective, j: int) -> tuple[float, Tensor]:
    """Member ``j`` of a :class:`~xlevda.core.objective.WindowObjective` minimized by
    ``torch.optim.LBFGS`` over the paper's full control (``alpha``, with a hybrid covariance
    ``(alpha, v)``) from its start: the per-member reference of the batched solvers."""
    x = objective.start_control[j : j + 1].clone().requires_grad_(True)
    member = torch.tensor([j])
    opt = torch.optim.LBFGS(
        [x],
        max_iter=1000,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-10,
        tolerance_change=1e-15,
    )

    def closure():
        opt.zero_grad()
        loss = objective.cost_full(x, member).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return objective.cost_full(x, member).item(), objective.subspace.state(x)[0]
