"""LDNet.fit(missing="mask"): land points left out, gaps left out of the loss and errors."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.fit_mutations import FITS, base_archive
from xlevda.errors import VariableError
from xlevda.surrogates.config import LDNetConfig, LearnedInitialState
from xlevda.surrogates.frames import TensorFrameSource
from xlevda.surrogates.initial_state import trajectory_loss
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.linear import fit_linear
from xlevda.surrogates.masking import mean_square, project
from xlevda.surrogates.pod import load_frames
from xlevda.surrogates.quality import heldout_square_sums
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.surrogates.training import evaluate

LAND = np.zeros((6, 5), bool)
LAND[2:4, 1:3] = True  # inside the grid: the domain's box is the same without it
LAND[4, 3] = True


def _fit(ds, fit, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the linear step's stability
        return xlevda.LDNet.fit(ds, ["a", "b"], FITS[fit], progress=False, **kw)


def _max_weight_difference(a, b) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs if x.dtype.is_floating_point)


@pytest.mark.parametrize("fit", ["gradient", "linear"])
def test_land_is_left_out_as_if_absent(fit):
    """A model fitted on a grid with land (NaN cells) has the weights of one fitted on the
    ocean cells alone, as scattered points: land values have no influence.  The two
    archives' statistics differ only in summation order (1 ulp of float64), below the
    float32 weights' resolution; 1e-6 allows a few float32 ulps of the weights (size 1)."""
    ds = base_archive(n_runs=8, n_frames=5)
    with_land = ds.where(~xr.DataArray(LAND, dims=("lat", "lon")))
    points = ds.stack(point=("lat", "lon")).reset_index("point")
    ocean = points.isel(point=np.flatnonzero(~LAND.ravel()))
    masked, alone = _fit(with_land, fit, missing="mask"), _fit(ocean, fit)
    assert _max_weight_difference(masked, alone) < 1e-6
    np.testing.assert_allclose(
        masked.quality.overall_errors, alone.quality.overall_errors, rtol=1e-6
    )
    assert masked.quality.land_fraction == LAND.mean()
    assert masked.quality.gap_fraction == 0.0
    assert alone.quality.land_fraction == 0.0
    # the comparison can fail: land filled with values instead of NaN changes the fit
    filled = _fit(with_land.fillna(1.0), fit)
    assert _max_weight_difference(filled, alone) > 1e-3


def test_nan_is_an_error_unless_masked():
    ds = base_archive().where(~xr.DataArray(LAND, dims=("lat", "lon")))
    # 5 runs x 4 frames x 5 land cells; the first at the first land cell
    msg = r"'eta' holds 100 NaN value\(s\), e.g. at run=0, .*lat=41.6, lon=-158.75.*missing='mask'"
    with pytest.raises(VariableError, match=msg):
        _fit(ds, "gradient")


def test_mask_on_complete_data_changes_nothing():
    ds = base_archive()
    plain, masked = _fit(ds, "gradient"), _fit(ds, "gradient", missing="mask")
    assert _max_weight_difference(plain, masked) == 0.0
    assert plain.quality.frame_errors == masked.quality.frame_errors


def test_gaps_are_masked_and_counted():
    ds = base_archive(n_runs=6)
    rng = np.random.default_rng(3)
    gaps = rng.random(ds.eta.shape) < 0.1
    with_gaps = ds.assign(eta=ds.eta.where(~gaps))
    model = _fit(with_gaps, "gradient", missing="mask")
    assert model.quality.gap_fraction == pytest.approx(gaps.sum() / (2 * gaps.size), rel=1e-12)
    assert model.quality.land_fraction == 0.0
    assert np.isfinite(model.quality.overall_errors).all()
    assert "gaps (masked)" in model.quality.summary()
    linear = _fit(with_gaps, "linear", missing="mask")
    assert np.isfinite(linear.quality.overall_errors).all()


def test_linear_fit_with_gaps_is_exact_on_fields_in_its_span():
    """Fields that are cosine series of the decoder's, evolving linearly, are fitted with
    20 % gaps as without: each frame's masked least-squares projection recovers its
    coefficients.  The fit runs in float64 on float64 data; the models hold float32
    weights of size ~1, so their forecasts agree to a few float32 ulps (1e-5; measured
    2.5e-6).  The same gaps read as zeros change the forecast by ~0.8."""
    x = torch.linspace(-1, 1, 24, dtype=torch.float64)[:, None]
    u = torch.linspace(-1, 1, 9, dtype=torch.float64)[:, None]
    basis = torch.cos(torch.pi * torch.arange(3) * (x + 1 + 1 / 23) / (2 + 2 / 23))  # (24, 3)
    step = torch.tensor([[0.9, 0.2, 0.0], [-0.2, 0.9, 0.0], [0.0, 0.0, 0.8]], dtype=x.dtype)
    coef = [torch.cat([torch.sin(u), u**2, torch.cos(2 * u)], -1)]  # (9, 3)
    for _ in range(4):
        coef.append(coef[-1] @ step.T)
    values = torch.einsum("ntk,pk->ntp", torch.stack(coef, 1), basis)[..., None]
    gaps = torch.rand(values.shape, generator=torch.Generator().manual_seed(0)) < 0.2
    config = LDNetConfig(
        latent_dim=4,
        learnable_dt=False,
        dynamics=xlevda.LinearDynamicsConfig(n_centres=5, refit=False),
        decoder=xlevda.CosineDecoderConfig(n_terms=6),
    )

    def forecast(v):
        model = LDNetModel(config, SurrogateSchema.minimal(5))
        train = TensorFrameSource(u[::2], x, v[::2], missing=True)
        fit_linear(model, train, TensorFrameSource(u[1::2], x, v[1::2], missing=True))
        with torch.no_grad():
            return model(u.float(), x.float(), 5)

    full = forecast(values)
    torch.testing.assert_close(
        forecast(values.masked_fill(gaps, torch.nan)), full, atol=1e-5, rtol=0
    )
    assert float((forecast(values.masked_fill(gaps, 0.0)) - full).abs().max()) > 0.1


def _tiny():
    torch.manual_seed(0)
    schema = SurrogateSchema.minimal(3)
    config = LDNetConfig(
        latent_dim=2, dynamics_width=4, dynamics_depth=1, decoder=xlevda.MLPDecoderConfig()
    )
    model = LDNetModel(config, schema)
    values = torch.rand(4, 3, 8, 1)
    gaps = torch.rand(values.shape) < 0.3
    return model, torch.rand(4, 1), torch.linspace(-1, 1, 8)[:, None], values, gaps


def test_loss_and_its_gradient_ignore_gaps():
    """The masked loss is the mean over the present values, whatever lies under a gap."""
    model, params, points, values, gaps = _tiny()
    loss = trajectory_loss(model, params, points, values.masked_fill(gaps, torch.nan), None)
    pred = model(params, points, 3)
    expected = (pred - values)[~gaps].square().mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    masked = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    expected.backward()
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(masked[n], p.grad)
    assert float(mean_square(torch.ones(2), torch.full((2,), torch.nan))) == 0.0


def test_errors_ignore_gaps():
    model, params, points, values, gaps = _tiny()
    holey = TensorFrameSource(params, points, values.masked_fill(gaps, torch.nan), missing=True)
    with torch.no_grad():
        pred = model(params, points, 3)
    err = (pred - values)[~gaps]
    result = evaluate(model, holey)
    assert result.mse == pytest.approx(float(err.square().mean()), rel=1e-6)
    assert result.rel_rmse == pytest.approx(float(err.norm() / values[~gaps].norm()), rel=1e-6)
    sq_error, sq_truth = heldout_square_sums(model, holey)
    keep = (~gaps).double()
    diff = (pred.double() - values.double()) * keep
    torch.testing.assert_close(sq_error, diff.square().sum((0, 2)).T)
    torch.testing.assert_close(sq_truth, (values.double() * keep).square().sum((0, 2)).T)
    with pytest.raises(VariableError, match="NaN"):
        TensorFrameSource(params, points, values.masked_fill(gaps, torch.nan))


def test_learned_initial_states_fit_frames_with_gaps():
    """Held-out runs start from the state fitted to the present values of their first frame."""
    ds = base_archive(n_runs=6)
    gaps = np.random.default_rng(4).random(ds.u.shape) < 0.2
    config = dataclasses.replace(FITS["gradient"], initial_state=LearnedInitialState())
    torch.manual_seed(0)
    model = xlevda.LDNet.fit(
        ds.assign(u=ds.u.where(~gaps)), ["a", "b"], config, missing="mask", progress=False
    )
    assert np.isfinite(model.quality.overall_errors).all()
    assert model.quality.gap_fraction > 0.05


def test_projection_refuses_frames_with_too_few_values():
    q = torch.linalg.qr(torch.rand(6, 3, dtype=torch.float64))[0]
    values = torch.rand(1, 2, 6, 1, dtype=torch.float64)
    values[0, 1, :4] = torch.nan  # 2 values left for 3 coefficients
    with pytest.raises(VariableError, match="run 0, frame 1, channel 0: its 2 present values"):
        project(q, values)


def test_land_streamed_chunk_by_chunk_as_in_memory():
    """A dask-backed archive read two runs at a time leaves out the same land points; the
    linear fit's sums then differ only in order (float64), below float32 weights (1e-6)."""
    ds = base_archive(n_runs=8).where(~xr.DataArray(LAND, dims=("lat", "lon")))
    loaded = _fit(ds, "linear", missing="mask")
    streamed = _fit(ds.chunk({"run": 2}), "linear", missing="mask", chunk_runs=2, memory_budget=0)
    assert _max_weight_difference(loaded, streamed) < 1e-6
    assert streamed.quality.land_fraction == loaded.quality.land_fraction == LAND.mean()


def test_pod_stages_refuse_gaps():
    values = torch.rand(2, 3, 4, 1).index_put_((torch.tensor([0]),) * 4, torch.tensor(torch.nan))
    source = TensorFrameSource(torch.rand(2, 1), torch.rand(4, 1), values, missing=True)
    with pytest.raises(VariableError, match="1 missing values"):
        load_frames(source)
