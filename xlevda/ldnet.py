"""LDNet with its xarray face: train from a Dataset, forecast to a labelled Dataset."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from xlevda._convert import build_schema, grid_coords, times_to_steps, to_points
from xlevda._fit_checks import (
    check_archive,
    n_validation,
    unused_training_options,
    with_table_size,
)
from xlevda._frames import DatasetFrameSource, frame_values, latent_array
from xlevda.core.dynamics import interpolate_latent
from xlevda.errors import ConfigError, VariableError
from xlevda.surrogates.config import LDNetConfig
from xlevda.surrogates.initial_state import fit_initial_state
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.linear import fit_linear
from xlevda.surrogates.opinf import fit_polynomial
from xlevda.surrogates.quality import measure_quality, stability, warn_if_unstable
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.sizing import choose_sizes
from xlevda.surrogates.training import train

__all__ = ["LDNet"]


class LDNet(LDNetModel):
    """Latent Dynamics Network surrogate (paper eq. 12-17) trained from xarray data.

    ``ds/dt = F(s, u)`` integrated by forward Euler from the shifted start
    ``s_{-1} = 0`` (one latent step per training frame), decoded anywhere in space
    by a coordinate-based field ``x(t, xi) = D(s(t), xi)``.  By default
    (``LDNetConfig()``) ``F`` is polynomial in the parameters and the state and ``D`` a
    cosine series, both fitted in closed form, their sizes chosen from the archive;
    with a neural decoder (``LDNetConfig(decoder=MLPDecoderConfig())``) both are
    networks trained by gradient descent.

    Examples
    --------
    >>> import xlevda
    >>> from xlevda.systems import tsunami
    >>> small = tsunami.TsunamiConfig(nx=12, ny=12, n_frames=4)
    >>> sims = tsunami.simulate(**tsunami.sample_sources(6, seed=0, config=small), config=small)
    >>> model = xlevda.LDNet.fit(sims, params=["src_lat", "src_lon"], progress=False)
    >>> fc = model.predict({"src_lat": 40.0, "src_lon": -155.0})
    >>> sorted(fc.data_vars), model.config.decoder.n_terms
    (['eta', 'u', 'v'], 12)
    >>> mlp = xlevda.LDNetConfig(decoder=xlevda.MLPDecoderConfig(), train=xlevda.TrainConfig(2))
    >>> len(xlevda.LDNet.fit(sims, ["src_lat", "src_lon"], mlp, progress=False).history.epoch)
    2
    """

    @classmethod
    def fit(
        cls,
        dataset: xr.Dataset,
        params: Sequence[str],
        config: LDNetConfig | None = None,
        *,
        variables: Sequence[str] | None = None,
        run_dim: str = "run",
        progress: bool = True,
        chunk_runs: int = 16,
        memory_budget: int = 2 * 1024**3,
        initial: LDNet | None = None,
        missing: Literal["error", "mask"] = "error",
        coords: Sequence[str] | None = None,
    ) -> LDNet:
        """Train an LDNet on simulation runs.

        Parameters
        ----------
        dataset : Dataset
            Runs with dims ``(run_dim, time, *space)``: a grid (``lat, lon`` or
            ``y, x``) or scattered points (coordinates sharing one dimension).
            May be dask-backed and larger than memory: it is then read
            ``chunk_runs`` runs at a time.
        params : sequence of str
            Coordinates on ``run_dim`` holding each run's parameters (the ``u`` of
            ``F(s, u)``), e.g. ``["src_lat", "src_lon"]``.
        config : LDNetConfig, optional
            By default ``LDNetConfig()``: the closed-form polynomial LDNet, its sizes chosen
            from the archive (:func:`~xlevda.surrogates.sizing.choose_sizes`, ``quality.note``).
        variables : sequence of str, optional
            Fields to learn; by default every data variable that is not a parameter
            (each must then lie over ``(run_dim, time, *space)``: name the fields to
            leave others out).
        run_dim : str
            Dimension enumerating runs; split into training and validation runs.
        progress : bool
            Show a progress bar.
        chunk_runs, memory_budget : int
            Streaming controls: runs per chunk, and bytes below which all runs are
            loaded once.
        initial : LDNet, optional
            Continue training from this model's weights (same architecture, and a
            schema equal to the one of ``dataset``); ``config`` then only sets the
            training options.
        missing : {"error", "mask"}
            What NaN in the variables means.  ``"error"`` (default): the data must be
            complete.  ``"mask"``: NaN marks a missing value.  A point that is NaN in
            every run, frame and variable (land) is left out of the training points;
            every other NaN (a gap) is left out of the loss and of the quality report's
            errors.  The fractions of land points and gaps are recorded in
            ``quality.land_fraction`` and ``quality.gap_fraction``.  The closed-form
            linear fit projects each frame on its present values (a frame must keep
            enough values to determine its cosine coefficients).  Infinite values are
            an error either way.
            The decoder is defined everywhere: decoded on land it extends the fields.
        coords : sequence of str, optional
            The spatial coordinates in decoder order, e.g. ``["y", "x"]``: 1-D (a grid),
            2-D over the same dimensions (a curvilinear grid, decoded on the same 2-D
            coordinates) or over one dimension (points).  Detected by default
            (:func:`xlevda._coords.spatial_names`; parameters are never space).
            Longitudes may cross the dateline, in -180..180 or 0..360.

        Returns
        -------
        LDNet
            The best model seen on the validation runs (on the training runs with
            ``validation_fraction=0``, which holds none out); its ``history`` holds the
            loss curves.  With ``config.dynamics`` a
            :class:`~xlevda.surrogates.config.LinearDynamicsConfig` or
            :class:`~xlevda.surrogates.config.PolynomialDynamicsConfig` the model is instead
            fitted in closed form (:func:`xlevda.surrogates.linear.fit_linear`,
            :func:`xlevda.surrogates.opinf.fit_polynomial`; of ``config.train`` only
            ``validation_fraction`` and ``seed`` apply, and one run at least is held out),
            reading the runs ``chunk_runs`` at a time; ``history`` is then ``None`` and
            ``metadata["linear_fit"]`` (``"polynomial_fit"``) holds the fit's report.
            With ``config.initial_state`` (learned per-run initial states) its
            ``initial_states`` row ``r`` belongs to the run at position
            ``metadata["initial_state_runs"][r]`` along ``run_dim``, and held-out
            runs are measured from the state fitted to their first frame.
            Either way ``quality`` holds the fit's
            :class:`~xlevda.surrogates.fitreport.FitReport`: the held-out runs' errors
            over their whole trajectories, per variable and frame (with ``refit``, of the
            same fit without them), the fit's wall time and, for closed-form latent
            dynamics, the spectral radius of the step (its Jacobian's, if polynomial).

        Raises
        ------
        XlevdaError
            A :class:`~xlevda.errors.ConfigError`, ``CoordinateError``, ``VariableError``
            or ``ShapeError`` that names what is wrong with the archive or the arguments
            (:func:`xlevda._fit_checks.check_archive`): nothing is left out of the model
            or converted silently.

        Warns
        -----
        UserWarning
            The latent step (its Jacobian) has spectral radius above 1 (an unstable forecast).
        """
        start = time.perf_counter()
        config = config if config is not None else LDNetConfig()
        if not isinstance(config, LDNetConfig):
            raise ConfigError(f"config must be an LDNetConfig or None, got {config!r}")
        archive = check_archive(
            dataset,
            params,
            variables,
            run_dim=run_dim,
            missing=missing,
            chunk_runs=chunk_runs,
            memory_budget=memory_budget,
            coords=coords,
        )
        assert isinstance(dataset, xr.Dataset)
        params, mask = archive.params, archive.missing
        kw = {"run_dim": run_dim, "allow_nan": mask is not None, "coords": coords}
        schema = build_schema(dataset, params, archive.variables, **kw)
        n_val = n_validation(config, dataset.sizes[run_dim], run_dim)
        order = np.random.default_rng(config.train.seed).permutation(dataset.sizes[run_dim])
        common: dict[str, Any] = {
            "run_dim": run_dim,
            "chunk_runs": chunk_runs,
            "memory_budget": memory_budget,
            "keep": None if mask is None else mask.keep,
            "missing": mask is not None,
        }
        train_src = DatasetFrameSource(dataset, schema, order[n_val:], **common)
        val_src = DatasetFrameSource(dataset, schema, order[:n_val], **common) if n_val else None
        unknown = "no held-out runs (validation_fraction=0): error on unseen runs unknown"
        notes = [] if n_val else [unknown]
        config, chosen = choose_sizes(config, train_src, schema.geometry)
        if chosen:
            sizes = ", ".join(f"{k}={v}" for k, v in chosen.items())
            notes.append(f"sizes chosen from the training runs: {sizes}")
        notes += [unused] if (unused := unused_training_options(config)) else []
        if config.dynamics is not None:
            if initial is not None:
                raise ConfigError(
                    "initial is not used by the closed-form fit of "
                    f"{type(config.dynamics).__name__}: leave it None, or continue a "
                    "gradient-trained model with its config (a neural decoder)"
                )
            assert val_src is not None
            model, measured = cls._fit_closed_form(config, schema, train_src, val_src)
            if measured is not model:
                notes.insert(
                    0,
                    "measured on the fit without the held-out runs; the returned model was "
                    "refitted on all runs",
                )
        else:
            config = with_table_size(config, train_src.n_runs)
            model = measured = cls._fit_gradient(
                config, schema, train_src, val_src, initial, progress
            )
            if config.initial_state is not None:
                model.metadata["initial_state_runs"] = np.sort(order[n_val:]).tolist()
        model.quality = measure_quality(
            measured,
            val_src,
            heldout_runs=np.sort(order[:n_val]).tolist(),
            seconds=time.perf_counter() - start,
            **stability(model),
            refitted=measured is not model,
            note="; ".join(notes),
            batch_size=config.train.batch_size,
        )
        if mask is not None:
            model.quality = replace(
                model.quality, land_fraction=mask.land_fraction, gap_fraction=mask.gap_fraction
            )
        warn_if_unstable(model.quality, stacklevel=2)
        return model

    @classmethod
    def _fit_gradient(
        cls,
        config: LDNetConfig,
        schema: SurrogateSchema,
        train_src: DatasetFrameSource,
        val_src: DatasetFrameSource | None,
        initial: LDNet | None,
        progress: bool,
    ) -> LDNet:
        """A model trained by gradient descent (from ``initial``'s weights when given)."""
        model = cls(config, schema)
        if initial is not None:
            if initial.schema != schema:
                raise ConfigError(
                    "initial model was trained on data with another schema (variables, "
                    "coordinates, normalization or parameters differ); continue training only "
                    "on the dataset it was trained on"
                )
            model.load_state_dict(initial.state_dict())
        model.history = train(model, train_src, val_src, config.train, progress=progress)
        return model

    @classmethod
    def _fit_closed_form(
        cls,
        config: LDNetConfig,
        schema: SurrogateSchema,
        train_src: DatasetFrameSource,
        val_src: DatasetFrameSource,
    ) -> tuple[LDNet, LDNet]:
        """The closed-form model, and the model its quality is measured on: itself, or with
        ``refit`` the same fit on the training runs alone."""
        dyn = config.dynamics
        assert dyn is not None
        fit = fit_linear if dyn.kind == "linear" else fit_polynomial
        measured = None
        if dyn.refit:
            alone = replace(dyn, refit=False, n_centres=train_src.n_runs)
            measured = cls(replace(config, dynamics=alone), schema)
            fit(measured, train_src, val_src)
        n_fit = train_src.n_runs + (val_src.n_runs if dyn.refit else 0)
        if dyn.n_centres is None:
            config = replace(config, dynamics=replace(dyn, n_centres=n_fit))
        model = cls(config, schema)
        model.metadata[f"{dyn.kind}_fit"] = fit(model, train_src, val_src)
        return model, model if measured is None else measured

    def predict(
        self,
        params: Mapping[str, Any] | xr.Dataset,
        times: Any = None,
        where: xr.Dataset | xr.DataArray | None = None,
        *,
        extrapolate: bool = False,
        initial_latent: xr.DataArray | np.ndarray | None = None,
    ) -> xr.Dataset:
        """Forecast without assimilation: roll the surrogate out for given parameters.

        Parameters
        ----------
        params : mapping or Dataset
            A value per parameter of ``schema.params``: scalars, 1-D arrays (over a
            dimension named ``run``) or DataArrays (their dimensions are kept and
            broadcast against each other).
        times : array-like, optional
            Output times (datetime64 or numbers, as in training); anywhere between
            training frames (eq. 17).  Defaults to the training frames.
        where : Dataset or DataArray, optional
            Where to decode: its spatial coordinates, gridded or scattered points.
            Defaults to the training grid.
        extrapolate : bool
            Allow times after the last training frame.
        initial_latent : DataArray or array, optional
            Latent states of the first frame, over a dimension ``latent`` (an array:
            last axis, the others over ``run``), e.g. from :meth:`encode_frame`;
            broadcast against ``params``.  Required by a surrogate with learned
            initial states (``LDNetConfig.initial_state``), not allowed otherwise.

        Returns
        -------
        Dataset
            One variable per surrogate output over ``(*param dims, time, *space)``.
        """
        s = self.schema
        u_da, s0_np = self._start(params, initial_latent)
        batch_dims = u_da[0].dims if u_da else ()
        u_np = np.stack([a.values.astype(float) for a in u_da], -1).reshape(-1, len(s.params))
        times = self.frame_times() if times is None else np.atleast_1d(np.asarray(times))
        step, frac = times_to_steps(times, s, extrapolate=extrapolate)
        coords, points, space_dims, space_shape = self._where(where)

        param = next(self.parameters())
        dev, dtype = param.device, param.dtype
        u = torch.as_tensor(s.param_norm.normalize(u_np), dtype=dtype, device=dev)
        with torch.no_grad():
            s0 = None if s0_np is None else torch.as_tensor(s0_np, dtype=dtype, device=dev)
            traj = self.rollout(u, int(step.max()) + 1, s0)
            u_t = u.unsqueeze(-2).expand(*traj.shape[:-1], u.shape[-1])
            s_t = interpolate_latent(
                self.vector_field,
                traj,
                u_t,
                self.dt,
                torch.as_tensor(step, device=dev),
                torch.as_tensor(frac, dtype=dtype, device=dev),
            )
            prepared = self.prepare_points(torch.as_tensor(points, dtype=dtype, device=dev))
            out = torch.stack(
                [self.decode_prepared(s_t[:, k], prepared) for k in range(len(step))], 1
            )
        values = s.output_norm.denormalize(out.cpu().double().numpy())
        shape = (*(u_da[0].shape if u_da else ()), len(step), *space_shape)
        time_name = "time"
        data_vars = {}
        for c, (name, attrs) in enumerate(zip(s.variables, s.variable_attrs, strict=True)):
            data_vars[name] = xr.DataArray(
                values[..., c].reshape(shape),
                dims=(*batch_dims, time_name, *space_dims),
                attrs=dict(attrs),
            )
        # where's scalar coordinates that name a parameter or its dimension (a run of the
        # archive, e.g. archive.isel(run=0)) give way to the forecast's own
        kept = {k: v for k, v in coords.items() if k not in (*batch_dims, *s.params)}
        ds = xr.Dataset(data_vars, coords={time_name: times, **kept})
        for a in u_da:
            ds = ds.assign_coords({a.name: a})
        ds.attrs.update({"Conventions": "CF-1.11", "title": "LDNet forecast (no assimilation)"})
        return ds

    def _start(self, params, initial_latent) -> tuple[list[xr.DataArray], np.ndarray | None]:
        """The parameter arrays, broadcast with ``initial_latent``, and the latent states
        flattened to (n, d_s) (``None`` without learned initial states)."""
        u_da = self._param_arrays(params)
        if not self.learns_initial_states:
            if initial_latent is not None:
                raise ConfigError(
                    "initial_latent is given but this surrogate has no learned initial states "
                    "(LDNetConfig.initial_state is None): its trajectory is a function of the "
                    "parameters alone; leave initial_latent None"
                )
            return u_da, None
        latent = latent_array(initial_latent, self.latent_dim)
        batch = xr.broadcast(*u_da, latent.isel(latent=0, drop=True))
        latent = latent.broadcast_like(batch[-1]).transpose(*batch[-1].dims, "latent")
        return list(batch[:-1]), np.array(latent.values.reshape(-1, self.latent_dim))

    def encode_frame(self, fields: xr.Dataset) -> xr.DataArray:
        """Latent states of the first frame whose decoded fields best fit ``fields``.

        Gauss-Newton through the decoder
        (:func:`~xlevda.surrogates.initial_state.fit_initial_state`), started from the
        nearest learned initial state; pass the result to :meth:`predict` as
        ``initial_latent`` to forecast from these fields.

        Parameters
        ----------
        fields : Dataset
            Some or all of the surrogate's variables at one time, over ``(*batch dims,
            *space)`` (a ``time`` dimension of size 1 is dropped); any spatial
            locations inside the training domain.  NaN cells are left out of the fit.

        Returns
        -------
        DataArray
            Over ``(*batch dims, "latent")``.

        Raises
        ------
        ConfigError
            The surrogate has no learned initial states.
        VariableError
            ``fields`` holds none of the variables, a variable lacks the spatial
            dimensions or has others than the first variable's, or a field is all NaN.
        """
        if not self.learns_initial_states:
            raise ConfigError(
                "encode_frame needs a surrogate with learned initial states "
                "(LDNetConfig.initial_state=LearnedInitialState()); this one starts every "
                "run from s_-1 = 0"
            )
        values, weight, points, batch = frame_values(fields, self.schema)
        like = self.dt0
        t = {"dtype": like.dtype, "device": like.device}
        s0 = fit_initial_state(
            self,
            torch.as_tensor(values, **t),
            torch.as_tensor(points, **t),
            weight=torch.as_tensor(weight, **t),
        )
        shape = tuple(batch.sizes.values())
        return xr.DataArray(
            s0.cpu().double().numpy().reshape(*shape, self.latent_dim),
            dims=(*batch.dims, "latent"),
            coords=batch.coords,
            name="initial_latent",
        )

    def _param_arrays(self, params: Mapping[str, Any] | xr.Dataset) -> list[xr.DataArray]:
        s = self.schema
        if isinstance(params, xr.Dataset):
            given, unknown = {str(k) for k in params.variables}, []
        else:
            given = set(params)
            unknown = sorted(str(p) for p in given - set(s.params))
        missing = [p for p in s.params if p not in given]
        if missing:
            raise VariableError(
                f"parameter(s) {missing} missing: the surrogate needs values for {list(s.params)}"
            )
        if unknown:
            raise VariableError(
                f"unknown parameter(s) {unknown}: the surrogate's parameters are {list(s.params)}"
            )
        arrays = []
        for p in s.params:
            v = params[p]
            if not isinstance(v, xr.DataArray):
                v = np.asarray(v, dtype=float)
                if v.ndim > 1:
                    raise VariableError(
                        f"parameter {p!r} has shape {v.shape}: pass a scalar, a 1-D array or a "
                        "DataArray with named dimensions"
                    )
                v = xr.DataArray(v, dims=("run",) * v.ndim)
            if not np.isfinite(v.values).all():
                raise VariableError(f"parameter {p!r} holds NaN or infinite values")
            arrays.append(v.rename(p))
        return list(xr.broadcast(*arrays))

    def frame_times(self) -> np.ndarray:
        """Times of the training frames (datetime64 or numbers, as in training)."""
        s = self.schema
        if s.frame_times:
            return np.asarray(
                s.frame_times, dtype="datetime64[ns]" if s.time_is_datetime else float
            )
        k = np.arange(s.n_frames)
        if s.time_is_datetime:
            origin = np.datetime64(s.time_origin, "ns")
            return origin + (k * s.time_step * 1e9).round().astype("timedelta64[ns]")
        return float(s.time_origin) + k * s.time_step

    def _where(self, where):
        s = self.schema
        if where is None:
            if not s.grid:
                raise VariableError(
                    "the surrogate was trained on scattered points and stores no grid: "
                    "pass where= with the locations to decode"
                )
            where = xr.Dataset(coords=grid_coords(s))
        points, layout = to_points(where, s)
        space_dims = layout.dims
        space_shape = tuple(where.sizes[d] for d in space_dims)
        coords = {
            k: v.variable
            for k, v in where.coords.items()
            if set(v.dims) <= set(space_dims) and k not in ("time",)
        }
        return coords, points, space_dims, space_shape
