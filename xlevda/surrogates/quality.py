"""Measuring a fit's quality on held-out runs (torch only): :func:`measure_quality`.

The held-out runs are rolled out from their parameters over all their frames and
decoded at every point; the errors are compared in physical units (the schema's
output normalization undone), per variable and frame, as :data:`DEFINITION
<xlevda.surrogates.fitreport.DEFINITION>` says.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from xlevda.errors import ShapeError
from xlevda.surrogates.fitreport import LINEAR_STEP, FitReport
from xlevda.surrogates.frames import FrameSource
from xlevda.surrogates.initial_state import fitted_prediction
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import present
from xlevda.surrogates.polynomial import PolynomialField, step_jacobian_radius
from xlevda.surrogates.vector_fields import ImpulseLinearField

__all__ = [
    "heldout_square_sums",
    "measure_quality",
    "stability",
    "step_spectral_radius",
    "warn_if_unstable",
]

_RADIUS_SAMPLES = 8
"""Fitted runs (at most), and with quadratic terms frames of each, whose rolled-out
states the Jacobian radius of polynomial dynamics is evaluated at."""


def step_spectral_radius(model: LDNetModel) -> float | None:
    """Spectral radius of the latent step ``c_{k+1} = (I + dt A) c_k + dt a`` of linear
    latent dynamics, the largest of the step's Jacobian over the rolled-out states of
    polynomial dynamics (see :func:`stability`); ``None`` for other dynamics.

    Examples
    --------
    >>> from xlevda.surrogates.config import LDNetConfig, LinearDynamicsConfig
    >>> from xlevda.surrogates.decoder_configs import CosineDecoderConfig, MLPDecoderConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> config = LDNetConfig(latent_dim=3, decoder=CosineDecoderConfig(n_terms=4),
    ...                      dynamics=LinearDynamicsConfig(n_centres=2))
    >>> step_spectral_radius(LDNetModel(config, SurrogateSchema.minimal(4)))  # A = 0: M = I
    1.0
    >>> plain = LDNetModel(LDNetConfig(decoder=MLPDecoderConfig()), SurrogateSchema.minimal(4))
    >>> step_spectral_radius(plain) is None
    True
    """
    field = model.dynamics
    if isinstance(field, PolynomialField):
        return _polynomial_radius(model, field)
    if not isinstance(field, ImpulseLinearField):
        return None
    with torch.no_grad():
        a = field.A.detach().double()
        step = torch.eye(a.shape[0], dtype=a.dtype) + float(model.dt) * a
        return float(torch.linalg.eigvals(step).abs().max())


def _polynomial_radius(model: LDNetModel, field: PolynomialField) -> float:
    """:func:`~xlevda.surrogates.polynomial.step_jacobian_radius` at the model's own
    trajectories from (up to ``_RADIUS_SAMPLES``, evenly spaced) fitted runs' parameters,
    its kernel centres: at as many evenly spaced frames with quadratic terms, else at the
    last (the Jacobian then depends on the parameters alone)."""
    centres = field.linear.centres
    u = centres[_spaced(centres.shape[0])]
    with torch.no_grad():
        states = model.rollout(u, model.schema.n_frames)[..., :-1]  # (M, T, r)
    frames = _spaced(states.shape[1]) if field.quadratic_modes else [states.shape[1] - 1]
    states = states[:, frames]
    u = u.unsqueeze(1).expand(*states.shape[:2], u.shape[-1])
    return step_jacobian_radius(field, states.flatten(0, 1), u.flatten(0, 1))


def _spaced(n: int) -> list[int]:
    """Up to ``_RADIUS_SAMPLES`` evenly spaced indices of ``range(n)``, first and last."""
    k = min(n, _RADIUS_SAMPLES)
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def stability(model: LDNetModel) -> dict[str, Any]:
    """``spectral_radius`` (:func:`step_spectral_radius`) and ``radius_of`` (what it is
    of), as keywords of :func:`measure_quality`.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> plain = LDNetModel(LDNetConfig(decoder=MLPDecoderConfig()), SurrogateSchema.minimal(4))
    >>> stability(plain)["spectral_radius"] is None
    True
    """
    radius_of = LINEAR_STEP
    if isinstance(model.dynamics, PolynomialField):
        n = len(_spaced(model.dynamics.linear.centres.shape[0]))
        radius_of = f"latent step Jacobian (largest over the trajectories of {n} fitted runs)"
    return {"spectral_radius": step_spectral_radius(model), "radius_of": radius_of}


def heldout_square_sums(
    model: LDNetModel, source: FrameSource, *, batch_size: int = 8
) -> tuple[Tensor, Tensor]:
    """Squared errors and squared truths of ``model`` on every run of ``source``.

    Each run is rolled out from its parameters over all ``source.n_frames`` frames
    (with learned initial states, from the state fitted to its first frame:
    :func:`~xlevda.surrogates.initial_state.fitted_prediction`) and decoded at every
    point; both are summed over runs and the points where a value is present (NaN
    targets are missing) in physical units (float64).

    Returns
    -------
    sq_error, sq_truth : Tensor, shape (C, T)
        Per variable (channel) and frame.
    """
    if source.n_runs < 1 or source.n_frames < 1:
        raise ShapeError(f"no held-out runs to measure: n_runs={source.n_runs}")
    norm = model.schema.output_norm
    scale = torch.tensor(norm.scale, dtype=torch.float64)
    offset = torch.tensor(norm.offset, dtype=torch.float64)
    like = model.dt0
    sq_error = sq_truth = torch.zeros((), dtype=torch.float64)
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in source.batches(batch_size, None, gen, False):
            params, points, values = (x.to(device=like.device, dtype=like.dtype) for x in batch[:3])
            pred = fitted_prediction(model, params, points, values).double().cpu()
            values = values.double().cpu()
            ok = present(values)  # NaN: a missing value, left out
            error, truth = (pred - values) * scale, values * scale + offset
            sq_error = sq_error + torch.where(ok, error, 0.0).square().sum((0, 2))
            sq_truth = sq_truth + torch.where(ok, truth, 0.0).square().sum((0, 2))
    model.train(was_training)
    return sq_error.T, sq_truth.T


def measure_quality(
    model: LDNetModel,
    source: FrameSource | None,
    *,
    heldout_runs: Sequence[int],
    seconds: float,
    spectral_radius: float | None = None,
    radius_of: str = LINEAR_STEP,
    refitted: bool = False,
    note: str = "",
    batch_size: int = 8,
) -> FitReport:
    """The :class:`~xlevda.surrogates.fitreport.FitReport` of ``model`` on ``source``.

    Parameters
    ----------
    model : LDNetModel
        The model the errors are measured on (for a refitted linear model, the one
        fitted without the held-out runs); its spectral radius is not recorded here
        (see :func:`step_spectral_radius`).
    source : FrameSource or None
        The held-out runs; ``None`` when there are none (``note`` then says why).
    heldout_runs : sequence of int
        Their indices in the training data (empty with ``source=None``).
    seconds : float
        Wall time of the fit.
    spectral_radius, radius_of, refitted, note
        As in :class:`~xlevda.surrogates.fitreport.FitReport` (the spectral radius of
        the returned model: :func:`stability`).
    batch_size : int
        Runs per forward pass.

    Examples
    --------
    >>> from xlevda.surrogates.decoder_configs import MLPDecoderConfig
    >>> import torch
    >>> from xlevda.surrogates.config import LDNetConfig
    >>> from xlevda.surrogates.schema import SurrogateSchema
    >>> from xlevda.surrogates.frames import TensorFrameSource
    >>> config = LDNetConfig(latent_dim=3, decoder=MLPDecoderConfig())
    >>> model = LDNetModel(config, SurrogateSchema.minimal(3))
    >>> src = TensorFrameSource(torch.zeros(2, 1), torch.rand(4, 1), torch.ones(2, 3, 4, 1))
    >>> report = measure_quality(model, src, heldout_runs=[5, 9], seconds=1.0)
    >>> len(report.frame_errors[0]), report.n_heldout_runs
    (3, 2)
    """
    variables = tuple(model.schema.variables)
    if source is None:
        return FitReport(
            variables,
            model.schema.n_frames,
            None,
            None,
            (),
            seconds,
            spectral_radius,
            note=note,
            radius_of=radius_of,
        )
    if source.n_runs != len(heldout_runs):
        raise ShapeError(
            f"heldout_runs names {len(heldout_runs)} runs, the source holds {source.n_runs}"
        )
    sq_error, sq_truth = heldout_square_sums(model, source, batch_size=batch_size)
    # each frame's error against the variable's truth norm over all frames: a frame whose
    # truth is zero (a wave at rest at frame 0) is measured, not divided by zero
    frames = (sq_error / sq_truth.mean(1, keepdim=True)).sqrt()
    overall = (sq_error.sum(1) / sq_truth.sum(1)).sqrt()  # the RMS over frames of ``frames``
    return FitReport(
        variables,
        source.n_frames,
        tuple(tuple(float(v) for v in row) for row in frames),
        tuple(float(v) for v in overall),
        tuple(int(i) for i in heldout_runs),
        seconds,
        spectral_radius,
        refitted=refitted,
        note=note,
        radius_of=radius_of,
    )


def warn_if_unstable(report: FitReport, *, stacklevel: int = 2) -> None:
    """Warn (``UserWarning``) when the report's latent step (its Jacobian) has spectral
    radius above 1."""
    if report.unstable:
        assert report.spectral_radius is not None
        why = (
            "its forecast is unstable (the leading latent mode grows geometrically, without "
            "bound beyond the training frames)"
            if report.radius_of == LINEAR_STEP
            else "its forecast can grow (perturbations grow along these trajectories; "
            "without quadratic terms, without bound for those parameters)"
        )
        warnings.warn(
            f"the fitted {report.radius_of} has spectral radius {report.spectral_radius:.4f} > "
            f"1: {why}; try fewer modes (latent_dim) or more runs",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
