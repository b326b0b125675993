"""The tsunami simulator as a batched, differentiable model of the full C-grid state.

:class:`TsunamiModel` exposes :func:`xlevda.systems.tsunami.simulate` through the full-state
model protocol (:class:`xlevda.surrogates.protocol.FullStateModel`): the latent state is the
simulator's own discretized state, one latent Euler step is one output frame of the simulator,
and the decoder interpolates the staggered fields bilinearly to query points.  The full-state
ensemble methods (ETKF/LETKF, EnSF, 4DEnVar) can then run with the simulator itself as the
model, with the same schema (variables, coordinates, time axis) as a surrogate trained on
:func:`~xlevda.systems.tsunami.simulate` output.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from xlevda.errors import ConfigError, ShapeError
from xlevda.surrogates.schema import Affine, SurrogateSchema
from xlevda.systems._cf import LAT_ATTRS, LON_ATTRS, global_attrs
from xlevda.systems.simulator import check_dtype, datetime_axis
from xlevda.systems.tsunami import (
    EARTH_RADIUS,
    PARAM_ATTRS,
    VAR_ATTRS,
    TsunamiConfig,
    initial_state,
    operators,
)
from xlevda.systems.tsunami_stepper import Operators, schedule, step
from xlevda.validate import is_int

__all__ = ["TsunamiModel"]

_VARIABLES = ("u", "v", "eta")  # schema order, as in the simulate dataset
_PARAMS = ("src_lat", "src_lon")
_ATTR_KEYS = ("units", "standard_name", "long_name", "axis")  # what build_schema keeps
_CORNERS = 4  # bilinear interpolation: four state elements per variable and point
_PREPARED = 2 * len(_VARIABLES) * _CORNERS  # 12 indices (as floats), then 12 weights


def _cf(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k in _ATTR_KEYS and isinstance(v, str)}


def _unpack_saved(t: Tensor) -> Tensor:
    return t


class TsunamiModel:
    """The tsunami simulator as a full-state model: C-grid state, frame step, bilinear decoder.

    - **State** ``s`` (..., N), ``N = 3 ny nx - ny - nx`` (``latent_dim``): ``eta`` at the
      ``ny * nx`` cell centres, then ``u`` at the ``ny * (nx - 1)`` interior east faces, then
      ``v`` at the ``(ny - 1) * nx`` interior north faces, each block row-major (south to
      north, west to east).  The wall faces are zero by the boundary condition and are not
      stored.  Physical units (m s-1, m): ``schema.output_norm`` is the identity.
    - **Parameters** ``u`` (..., 2) = ``(src_lat, src_lon)`` normalized by
      ``schema.param_norm``, whose range is the one :func:`~xlevda.systems.tsunami.sample_sources`
      draws from (the south-west quarter of the box).  They only set the initial state
      (:meth:`initial_state`): the source does not enter the dynamics, so
      :meth:`vector_field` ignores ``u``.
    - **Dynamics**: :attr:`dt` is one output frame (``config.frame_interval`` seconds) and
      ``F(s, u) = (advance(s) - s) / dt``, where ``advance`` runs the simulator's own sub-steps
      over one frame.  The Euler rollout ``s_{k+1} = s_k + dt F(s_k, u)`` of the assimilation
      code therefore reproduces :func:`~xlevda.systems.tsunami.simulate` frame by frame, up to
      round-off; it is not the shallow-water tendency itself.  Differentiable by autograd
      (except at the upwind switch ``u = 0`` or ``v = 0`` of a face).
    - **Decoder**: query points are ``(lat, lon)`` normalized by ``schema.coord_norm``, which
      maps the first and last cell centres onto -1 and 1.  Latitude and longitude are affine
      in the box positions ``y`` and ``x`` (local spherical approximation with a fixed east
      radius), so a normalized coordinate ``p`` sits at grid index ``(p + 1) (n - 1) / 2``.
      Each variable is interpolated bilinearly from its own staggered positions (``eta`` at
      centres; ``u`` at east faces, ``v`` at north faces, wall faces zero); at a cell centre
      this is exactly what ``simulate`` writes (``u``, ``v`` averaged from the two faces).
      Points outside the box spanned by the cell centres are clamped to its nearest edge
      (the xarray layer rejects them before).  Positions within a few rounding errors of a
      grid line snap to it.
    - **Localization**: :meth:`distances` are Euclidean distances in the plane of the box, in
      **kilometres** (the unit of a localization radius), from every element's own position
      (cell or face centre).

    Parameters
    ----------
    config : TsunamiConfig, optional
        Grid, physics, frames and placement (default ``TsunamiConfig()``).
    n_frames : int, optional
        Frames of the schema's time axis, >= 2 (default ``config.n_frames``).  The model is
        valid at any time; this is only the horizon that time checks treat as covered.
    dtype, device
        Of :attr:`dt`.  The other methods compute in the dtype and on the device of their
        inputs.

    Examples
    --------
    >>> import torch
    >>> from xlevda.systems.tsunami import TsunamiConfig, simulate
    >>> cfg = TsunamiConfig(nx=8, ny=8, n_frames=3)
    >>> model = TsunamiModel(cfg)
    >>> model.latent_dim, model.param_dim, model.schema.variables
    (176, 2, ('u', 'v', 'eta'))
    >>> u = torch.zeros(1, 2, dtype=torch.float64)  # the centre of the source range
    >>> s = model.initial_state(u)
    >>> s1 = s + model.dt * model.vector_field(s, u)  # one frame later
    >>> out = model.decode(s1, model.grid_points())  # (1, 64, 3): u, v, eta at the centres
    >>> lat, lon = model.schema.param_norm.denormalize(u.numpy())[0]
    >>> ds = simulate(lat, lon, cfg).isel(run=0, time=1)
    >>> ref = torch.as_tensor(ds[["u", "v", "eta"]].to_array("c").transpose("lat", "lon", "c")
    ...                       .values.reshape(64, 3))
    >>> bool(torch.allclose(out[0], ref, rtol=0, atol=1e-12))
    True
    """

    def __init__(
        self,
        config: TsunamiConfig | None = None,
        *,
        n_frames: int | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ) -> None:
        config = TsunamiConfig() if config is None else config
        if not isinstance(config, TsunamiConfig):
            raise ConfigError(f"config must be a TsunamiConfig, got {type(config).__name__}")
        n_frames = config.n_frames if n_frames is None else n_frames
        if not is_int(n_frames) or n_frames < 2:
            raise ConfigError(
                f"n_frames must be an integer >= 2 (the time axis needs a step), got {n_frames!r}"
            )
        check_dtype(dtype)
        self.config = config
        ny, nx = config.ny, config.nx
        self._sizes = (ny * nx, ny * (nx - 1), (ny - 1) * nx)  # eta, u, v blocks
        self.latent_dim = sum(self._sizes)
        self.param_dim = len(_PARAMS)
        ((self._n_steps, self._sub_dt),) = schedule(
            np.array([config.frame_interval]), config.max_time_step
        )
        self._dt = torch.tensor(config.frame_interval, dtype=dtype, device=device)
        self._ops: dict[tuple[torch.dtype, torch.device], Operators] = {}
        self.schema = self._build_schema(int(n_frames))

    # ------------------------------------------------------------------------------- schema

    def _build_schema(self, n_frames: int) -> SurrogateSchema:
        """The schema ``build_schema`` makes of a ``simulate`` output, with identity outputs
        and the ``sample_sources`` range as parameter normalization."""
        cfg = self.config
        lat = cfg.to_latlon(0.0, cfg.y)[0]  # exactly the coordinates simulate writes
        lon = cfg.to_latlon(cfg.x, 0.0)[1]
        # time axis: the simulate coordinate, read as build_schema reads it
        times = datetime_axis(cfg.start, cfg.frame_interval * np.arange(n_frames, dtype=float))
        seconds = times.astype(np.int64) / 1e9
        # sources: (-L/2 + a L, -L/2 + b L), a, b ~ U(0, 0.5) -> box positions in [-L/2, 0]
        edge = np.array([-cfg.length / 2, 0.0])
        src_lat, src_lon = cfg.to_latlon(edge, edge)
        lo, hi = [src_lat[0], src_lon[0]], [src_lat[1], src_lon[1]]
        attrs = global_attrs(
            "Tsunami benchmark full-state model: shallow water on a closed beta-plane box",
            "xlevda.systems.tsunami_model.TsunamiModel",
            cfg,
        )
        attrs |= {
            "state": "eta at cell centres, u at interior east faces, v at interior north faces",
            "vector_field": "increment of one frame of the simulator's sub-steps divided by dt",
            "decoder": "bilinear interpolation from each variable's staggered positions",
            "distance_units": "km",
        }
        return SurrogateSchema(
            variables=_VARIABLES,
            variable_attrs=tuple(_cf(VAR_ATTRS[v]) for v in _VARIABLES),
            output_norm=Affine((0.0,) * len(_VARIABLES), (1.0,) * len(_VARIABLES)),
            coords=("lat", "lon"),
            coord_attrs=(_cf(LAT_ATTRS), _cf(LON_ATTRS)),
            coord_norm=Affine.from_range([lat.min(), lon.min()], [lat.max(), lon.max()]),
            params=_PARAMS,
            param_attrs=tuple(_cf(PARAM_ATTRS[p]) for p in _PARAMS),
            param_norm=Affine.from_range(lo, hi),
            param_range=tuple((float(a), float(b)) for a, b in zip(lo, hi, strict=True)),
            time_origin=str(times[0]),
            time_step=float(np.diff(seconds).mean()),
            time_units="s",
            time_is_datetime=True,
            n_frames=n_frames,
            grid={"lat": tuple(lat.tolist()), "lon": tuple(lon.tolist())},
            frame_times=tuple(str(t) for t in times),
            geometry="plane",
            attrs=attrs,
        )

    @property
    def dt(self) -> Tensor:
        """One output frame, ``config.frame_interval`` seconds, as a 0-d tensor."""
        return self._dt

    # ------------------------------------------------------------------------------ packing

    def _check_state(self, s: Tensor, name: str = "s") -> None:
        if not isinstance(s, Tensor) or s.dim() < 1 or s.shape[-1] != self.latent_dim:
            shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            ny, nx = self.config.ny, self.config.nx
            raise ShapeError(
                f"{name} must have shape (..., N) with N = 3 ny nx - ny - nx = {self.latent_dim} "
                f"(ny={ny}, nx={nx}), got {shape}"
            )

    def _pack(self, eta: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """``eta`` (B, ny, nx), ``u`` (B, ny, nx+1), ``v`` (B, ny+1, nx) -> (B, N)."""
        b = eta.shape[0]
        return torch.cat(
            [eta.reshape(b, -1), u[..., 1:-1].reshape(b, -1), v[..., 1:-1, :].reshape(b, -1)],
            -1,
        )

    def _unpack(self, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, N) -> fresh ``eta`` (B, ny, nx), ``u`` (B, ny, nx+1), ``v`` (B, ny+1, nx)."""
        ny, nx, b = self.config.ny, self.config.nx, s.shape[0]
        e, a, c = s.split(self._sizes, -1)
        u = s.new_zeros(b, ny, nx + 1)
        v = s.new_zeros(b, ny + 1, nx)
        u[..., 1:-1] = a.reshape(b, ny, nx - 1)
        v[..., 1:-1, :] = c.reshape(b, ny - 1, nx)
        return e.reshape(b, ny, nx).clone(), u, v

    def state_to_fields(self, s: Tensor) -> Tensor:
        """``u``, ``v`` (face averages) and ``eta`` at cell centres, in schema order.

        Parameters
        ----------
        s : Tensor, shape (..., N)

        Returns
        -------
        Tensor, shape (..., 3, ny, nx)
            What :func:`~xlevda.systems.tsunami.simulate` writes for this state.
        """
        self._check_state(s)
        lead, ny, nx = s.shape[:-1], self.config.ny, self.config.nx
        e, a, b = s.split(self._sizes, -1)
        a = torch.nn.functional.pad(a.reshape(*lead, ny, nx - 1), (1, 1))
        b = torch.nn.functional.pad(b.reshape(*lead, ny - 1, nx), (0, 0, 1, 1))
        u = 0.5 * (a[..., :-1] + a[..., 1:])
        v = 0.5 * (b[..., :-1, :] + b[..., 1:, :])
        return torch.stack([u, v, e.reshape(*lead, ny, nx)], -3)

    def state_channels(self) -> Tensor:
        """Schema variable of every state element: (N,) int64 (``eta`` 2, ``u`` 0, ``v`` 1).

        On the device of :attr:`dt`.
        """
        return torch.cat(
            [
                torch.full((n,), _VARIABLES.index(name), dtype=torch.int64, device=self._dt.device)
                for name, n in zip(("eta", "u", "v"), self._sizes, strict=True)
            ]
        )

    def element_positions(
        self, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> Tensor:
        """Box position ``(x, y)`` in metres of every state element: (N, 2).

        Cell centres for ``eta``, east-face centres for ``u``, north-face centres for ``v``.
        """
        cfg = self.config
        kw = {"dtype": dtype, "device": device}
        xc, yc = torch.as_tensor(cfg.x, **kw), torch.as_tensor(cfg.y, **kw)
        xf = -cfg.length / 2 + torch.arange(1, cfg.nx, **kw) * cfg.dx  # interior east faces
        yf = -cfg.length / 2 + torch.arange(1, cfg.ny, **kw) * cfg.dy  # interior north faces

        def mesh(xs: Tensor, ys: Tensor) -> Tensor:
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            return torch.stack([x.flatten(), y.flatten()], -1)

        return torch.cat([mesh(xc, yc), mesh(xf, yc), mesh(xc, yf)])

    def grid_points(
        self, *, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> Tensor:
        """Normalized ``(lat, lon)`` of the ``ny * nx`` cell centres, row-major: (ny nx, 2).

        The same points the xarray layer makes of the ``simulate`` grid.
        """
        lat, lon = (np.asarray(self.schema.grid[c]) for c in self.schema.coords)
        mesh = np.stack([m.ravel() for m in np.meshgrid(lat, lon, indexing="ij")], -1)
        return torch.as_tensor(self.schema.embed(mesh)[0], dtype=dtype, device=device)

    # ---------------------------------------------------------------------------- dynamics

    def _check_params(self, u: Tensor, name: str) -> None:
        if not isinstance(u, Tensor) or u.dim() < 1 or u.shape[-1] != self.param_dim:
            shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
            raise ShapeError(
                f"{name} must have shape (..., 2): normalized (src_lat, src_lon), got {shape}"
            )

    def initial_state(self, u: Tensor) -> Tensor:
        """States at rest with the Gaussian bump of each source, as ``simulate`` starts.

        Differentiable in ``u``.  A source outside the box gives the part of its bump inside.

        Parameters
        ----------
        u : Tensor, shape (..., 2)
            Normalized ``(src_lat, src_lon)`` (see ``schema.param_norm``).

        Returns
        -------
        Tensor, shape (..., N)
            In the dtype and on the device of ``u``.
        """
        self._check_params(u, "u")
        cfg, norm = self.config, self.schema.param_norm
        lead = u.shape[:-1]
        flat = u.reshape(-1, self.param_dim)
        lat = norm.offset[0] + norm.scale[0] * flat[:, 0]
        lon = norm.offset[1] + norm.scale[1] * flat[:, 1]
        east_radius = EARTH_RADIUS * math.cos(math.radians(cfg.center_lat))
        x = torch.deg2rad(lon - cfg.center_lon) * east_radius
        y = torch.deg2rad(lat - cfg.center_lat) * EARTH_RADIUS
        eta, uf, vf = initial_state(x, y, cfg, u.dtype, u.device)
        return self._pack(eta, uf, vf).reshape(*lead, self.latent_dim)

    def _operators(self, dtype: torch.dtype, device: torch.device) -> Operators:
        key = (dtype, device)
        if key not in self._ops:
            self._ops[key] = operators(self.config, dtype, device)
        return self._ops[key]

    def advance(self, s: Tensor) -> Tensor:
        """States one frame later, by the simulator's own sub-steps: (..., N) -> (..., N).

        Differentiable: the simulator updates its fields in place, so every tensor autograd
        saves is copied when saved.
        """
        self._check_state(s)
        lead = s.shape[:-1]
        eta, u, v = self._unpack(s.reshape(-1, self.latent_dim))
        op = self._operators(s.dtype, s.device)
        with torch.autograd.graph.saved_tensors_hooks(Tensor.clone, _unpack_saved):
            for _ in range(self._n_steps):
                step(eta, u, v, self._sub_dt, op)
        return self._pack(eta, u, v).reshape(*lead, self.latent_dim)

    def vector_field(self, s: Tensor, u: Tensor) -> Tensor:
        """``(advance(s) - s) / dt``: ``s`` (..., N), ``u`` (..., 2) -> (..., N).

        ``u`` is ignored (the source only sets the initial state); only its last dimension
        is checked.  Leading dimensions of ``s`` are batch dimensions.
        """
        self._check_state(s)
        self._check_params(u, "u")
        dt = self._dt.to(dtype=s.dtype, device=s.device)
        return (self.advance(s) - s) / dt

    # ----------------------------------------------------------------------------- decoder

    def _grid_index(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Fractional (row, column) of normalized points in cell-centre index space."""
        ny, nx = self.config.ny, self.config.nx
        row = (points[..., 0] + 1.0) * ((ny - 1) / 2)
        col = (points[..., 1] + 1.0) * ((nx - 1) / 2)
        return row, col

    def _check_points(self, points: Tensor, name: str = "points") -> None:
        if not isinstance(points, Tensor) or points.dim() < 2 or points.shape[-1] != 2:
            shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ShapeError(
                f"{name} must have shape (..., P, 2): normalized (lat, lon) decoder inputs, "
                f"got {shape}"
            )
        if not points.dtype.is_floating_point:
            raise ShapeError(f"{name} must be a floating tensor, got dtype {points.dtype}")

    def prepare_points(self, points: Tensor) -> Tensor:
        """Gather indices and bilinear weights of each point: (..., P, 2) -> (..., P, 24).

        For each variable in schema order (``u``, ``v``, ``eta``) the four state elements
        around the point and their weights: ``prepared[..., :12]`` holds the flat state
        indices as floats (exact: ``N`` must be below ``2 / eps`` of the dtype, ``2**24`` in
        float32), ``prepared[..., 12:]`` the weights.  A wall face, zero by the boundary
        condition, gets weight 0 (and the index of a neighbouring interior face).
        """
        self._check_points(points)
        n, eps = self.latent_dim, torch.finfo(points.dtype).eps
        if n - 1 > 2 / eps:
            raise ConfigError(
                f"prepare_points in {points.dtype} cannot hold state indices up to "
                f"N - 1 = {n - 1} exactly: use float32 or float64 points"
            )
        ny, nx = self.config.ny, self.config.nx
        row, col = self._grid_index(points)
        tol = 16 * max(ny, nx) * eps

        def snap(x: Tensor, hi: int) -> Tensor:
            near = torch.round(x)
            return torch.where((x - near).abs() <= tol, near, x).clamp(0.0, hi)

        row, col = snap(row, ny - 1), snap(col, nx - 1)

        def axis(x: Tensor, n_pos: int) -> tuple[Tensor, Tensor]:
            """Lower neighbour (long) and fraction among positions 0 .. n_pos - 1."""
            i0 = torch.floor(x).clamp(max=n_pos - 2)
            return i0.long(), x - i0

        r_c, fr_c = axis(row, ny)  # cell-centre rows
        c_c, fc_c = axis(col, nx)  # cell-centre columns
        r_f, fr_f = axis(row + 0.5, ny + 1)  # north-face rows 0 .. ny (walls 0, ny)
        c_f, fc_f = axis(col + 0.5, nx + 1)  # east-face columns 0 .. nx (walls 0, nx)

        def corners(r0, fr, c0, fc, flat_index):
            """Indices (..., P, 4) and weights (..., P, 4) of the four surrounding elements."""
            idx, w = [], []
            for dr, wr in ((0, 1 - fr), (1, fr)):
                for dc, wc in ((0, 1 - fc), (1, fc)):
                    i, valid = flat_index(r0 + dr, c0 + dc)
                    idx.append(i)
                    w.append(wr * wc if valid is None else wr * wc * valid.to(fr.dtype))
            return torch.stack(idx, -1), torch.stack(w, -1)

        off_u, off_v = self._sizes[0], self._sizes[0] + self._sizes[1]

        def eta_index(r, c):
            return r * nx + c, None

        def u_index(r, f):  # east face f of row r; interior faces 1 .. nx-1
            valid = (f >= 1) & (f <= nx - 1)
            return off_u + r * (nx - 1) + f.clamp(1, nx - 1) - 1, valid

        def v_index(g, c):  # north face g of column c; interior faces 1 .. ny-1
            valid = (g >= 1) & (g <= ny - 1)
            return off_v + (g.clamp(1, ny - 1) - 1) * nx + c, valid

        parts = {
            "u": corners(r_c, fr_c, c_f, fc_f, u_index),
            "v": corners(r_f, fr_f, c_c, fc_c, v_index),
            "eta": corners(r_c, fr_c, c_c, fc_c, eta_index),
        }
        idx = torch.cat([parts[v][0] for v in _VARIABLES], -1).to(points.dtype)
        w = torch.cat([parts[v][1] for v in _VARIABLES], -1)
        return torch.cat([idx, w], -1)

    def decode_prepared(self, s: Tensor, prepared: Tensor) -> Tensor:
        """``s`` (..., N), ``prepared`` (..., P, 24) -> (..., P, 3); leading dims broadcast.

        E.g. ``s`` (K, T, N) with ``prepared`` (T, P, 24) gives (K, T, P, 3); ``s`` (K, N)
        with ``prepared`` (P, 24) gives (K, P, 3).
        """
        self._check_state(s)
        if (
            not isinstance(prepared, Tensor)
            or prepared.dim() < 2
            or prepared.shape[-1] != _PREPARED
        ):
            shape = tuple(prepared.shape) if isinstance(prepared, Tensor) else type(prepared)
            raise ShapeError(
                f"prepared must have shape (..., P, {_PREPARED}) from prepare_points, got {shape}"
            )
        try:
            lead = torch.broadcast_shapes(s.shape[:-1], prepared.shape[:-2])
        except RuntimeError:
            raise ShapeError(
                f"leading dimensions of s {tuple(s.shape)} and prepared "
                f"{tuple(prepared.shape)} do not broadcast (s (..., N), prepared (..., P, F))"
            ) from None
        p, half = prepared.shape[-2], _PREPARED // 2
        idx = prepared[..., :half].long().reshape(*prepared.shape[:-2], p * half)
        w = prepared[..., half:].to(s.dtype)
        values = torch.gather(
            s.expand(*lead, self.latent_dim), -1, idx.expand(*lead, p * half)
        ).reshape(*lead, p, len(_VARIABLES), _CORNERS)
        return (values * w.reshape(*w.shape[:-1], len(_VARIABLES), _CORNERS)).sum(-1)

    def decode(self, s: Tensor, points: Tensor) -> Tensor:
        """``s`` (..., N), ``points`` (..., P, 2) -> (..., P, 3): bilinear u, v, eta.

        Equals ``decode_prepared(s, prepare_points(points))``; leading dims broadcast.
        """
        self._check_state(s)
        return self.decode_prepared(s, self.prepare_points(points))

    def distances(self, points: Tensor) -> Tensor:
        """Distance in km from every state element to every query point: (P, 2) -> (N, P).

        Euclidean in the plane of the box, between each element's position
        (:meth:`element_positions`) and each point mapped to box metres (not clamped).
        """
        self._check_points(points)
        if points.dim() != 2:
            raise ShapeError(
                f"points must have shape (P, 2): normalized (lat, lon), got {tuple(points.shape)}"
            )
        cfg = self.config
        row, col = self._grid_index(points)
        x = -cfg.length / 2 + (col + 0.5) * cfg.dx
        y = -cfg.length / 2 + (row + 0.5) * cfg.dy
        pos = self.element_positions(dtype=points.dtype, device=points.device)
        return torch.hypot(pos[:, :1] - x, pos[:, 1:] - y) / 1000.0
