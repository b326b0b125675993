"""Frame-0 latent states of a surrogate with learned initial states (torch only).

A model trained with :class:`~xlevda.surrogates.config.LearnedInitialState` holds
one learned initial latent state per training run (an auto-decoder).  The state of
a run it was not trained on is the least-squares fit of the decoder to that run's
first frame (:func:`~xlevda.core.inversion.fit_latent`, Gauss-Newton), started
from the entry of the learned table whose decoded field is nearest.
"""

from __future__ import annotations

import torch
from torch import Tensor

from xlevda.core.inversion import fit_latent
from xlevda.core.optim import GaussNewtonConfig
from xlevda.errors import ShapeError, VariableError
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import mean_square, present

__all__ = ["fit_initial_state", "fitted_prediction", "nearest_table_state", "trajectory_loss"]


def nearest_table_state(
    model: LDNetModel, values: Tensor, prepared: Tensor, weight: Tensor | None = None
) -> Tensor:
    """The learned initial state whose decoded field best fits each member's ``values``.

    Parameters
    ----------
    model : LDNetModel
        With learned initial states.
    values : Tensor, shape (K, P, C)
        Normalized fields.
    prepared : Tensor, shape (P, F)
        ``model.prepare_points(points)``.
    weight : Tensor, shape (K, P, C), optional
        Non-negative weights (0 where a value is missing); default 1.

    Returns
    -------
    Tensor, shape (K, d_s)
    """
    table = model.initial_states.detach()
    w = torch.ones_like(values) if weight is None else weight.expand_as(values)
    v = values.flatten(1)
    w = w.flatten(1)
    like = {"dtype": values.dtype, "device": values.device}
    best_cost = torch.full((values.shape[0],), torch.inf, **like)
    best = torch.zeros(values.shape[0], model.latent_dim, **like)
    with torch.no_grad():
        for chunk in table.split(64):
            d = model.decode_prepared(chunk, prepared).flatten(1)  # (n, P C)
            cost = w @ d.square().T - 2 * (w * v) @ d.T + (w * v.square()).sum(1, keepdim=True)
            c_min, i_min = cost.min(1)
            better = c_min < best_cost
            best_cost = torch.where(better, c_min, best_cost)
            best = torch.where(better[:, None], chunk[i_min], best)
    return best


def fit_initial_state(
    model: LDNetModel,
    values: Tensor,
    points: Tensor,
    *,
    weight: Tensor | None = None,
    config: GaussNewtonConfig | None = None,
) -> Tensor:
    """Frame-0 latent states of ``K`` fields: the decoder fitted to them by Gauss-Newton.

    Started from :func:`nearest_table_state`; a member whose fit fails keeps that start.

    Parameters
    ----------
    model : LDNetModel
        With learned initial states (``config.initial_state``).
    values : Tensor, shape (K, P, C)
        Normalized fields at ``points``, in the model's dtype.
    points : Tensor, shape (P, n_coords)
        Normalized query points.
    weight : Tensor, shape (K, P, C) or (P, C), optional
        Non-negative weights (0 where a value is missing); default 1.
    config : GaussNewtonConfig, optional

    Returns
    -------
    Tensor, shape (K, d_s)
        Detached.

    Raises
    ------
    ShapeError
        ``model`` learns no initial states, or the shapes disagree.
    VariableError
        ``values`` hold NaN or infinity.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.config import LDNetConfig, LearnedInitialState
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> cfg = LDNetConfig(latent_dim=2, initial_state=LearnedInitialState(n_runs=3),
    ...                   decoder=MLPDecoderConfig())
    >>> model = LDNetModel(cfg, SurrogateSchema.minimal(4, coords=("x",)))
    >>> pts = torch.linspace(-1, 1, 9)[:, None]
    >>> truth = model.initial_states[1:2].detach()
    >>> values = model.decode(truth, pts).detach()
    >>> s0 = fit_initial_state(model, values, pts)
    >>> bool((model.decode(s0, pts) - values).abs().max() < 1e-4)
    True
    """
    if not model.learns_initial_states:
        raise ShapeError(
            "fit_initial_state needs a model with learned initial states "
            "(LDNetConfig.initial_state); this one starts every run from s_-1 = 0"
        )
    if values.dim() != 3 or points.dim() != 2 or values.shape[1] != points.shape[0]:
        raise ShapeError(
            f"fit_initial_state needs values (K, P, C) and points (P, n_coords) with one P; "
            f"got values {tuple(values.shape)}, points {tuple(points.shape)}"
        )
    if values.shape[-1] != model.schema.n_channels or points.shape[-1] != model.schema.n_coords:
        raise ShapeError(
            f"values must have {model.schema.n_channels} channels and points "
            f"{model.schema.n_coords} coordinates; got values {tuple(values.shape)}, points "
            f"{tuple(points.shape)}"
        )
    if not bool(torch.isfinite(values).all()):
        raise VariableError("the fields to fit hold NaN or infinite values (give weight=0 there)")
    with torch.no_grad():
        start = nearest_table_state(model, values, model.prepare_points(points), weight)
    with torch.enable_grad():
        res = fit_latent(model, values, points, start, weight=weight, config=config)
    return torch.where(res.failed[:, None], start, res.x).detach()


def fitted_prediction(model: LDNetModel, params: Tensor, points: Tensor, values: Tensor) -> Tensor:
    """``model``'s decoded trajectories of runs (B, T, P, C) with targets ``values``.

    A model with learned initial states starts each run from the state fitted to
    the run's first frame (:func:`fit_initial_state`, at that frame's points):
    frame 0 then measures the fit, the later frames the forecast.  Other models
    roll out from the parameters alone.

    Parameters
    ----------
    model : LDNetModel
    params : Tensor, shape (B, d_u)
    points : Tensor, shape (T, P, n_coords) or (P, n_coords)
    values : Tensor, shape (B, T, P, C)
    """
    s0 = None
    if model.learns_initial_states:
        first = points if points.dim() == 2 else points[0]
        frame, ok = values[:, 0], present(values[:, 0])  # NaN: missing, left out of the fit
        if bool(ok.all()):
            s0 = fit_initial_state(model, frame, first)
        else:
            filled = torch.where(ok, frame, torch.zeros_like(frame))
            s0 = fit_initial_state(model, filled, first, weight=ok.to(frame.dtype))
    return model(params, points, values.shape[1], s0)


def trajectory_loss(
    model: LDNetModel, params: Tensor, points: Tensor, values: Tensor, runs: Tensor | None
) -> Tensor:
    """The training loss of a batch: mean squared error of its decoded trajectories
    (over the values present: NaN targets are missing, :mod:`~xlevda.surrogates.masking`),
    plus with learned initial states the penalty ``1/2 lambda |s_0^r|^2`` averaged
    over the batch's runs ``runs`` (rows of the table, (B,))."""
    init = model.config.initial_state
    if init is None:
        return mean_square(model(params, points, values.shape[1]), values)
    if runs is None:
        raise ShapeError(
            "a model with learned initial states needs each batch's run indices (FrameBatch.runs)"
        )
    if int(runs.max()) >= model.initial_states.shape[0]:
        raise ShapeError(
            f"the training source has runs beyond the {model.initial_states.shape[0]} rows of "
            "the learned initial-state table (LearnedInitialState.n_runs)"
        )
    s0 = model.initial_states[runs]
    mse = mean_square(model(params, points, values.shape[1], s0), values)
    return mse + 0.5 * init.regularization * s0.square().sum(-1).mean()
