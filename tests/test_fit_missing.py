"""LDNet.fit(missing="mask"): land points left out, gaps left out of the loss and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.fit_mutations import FITS, base_archive
from xlevda.errors import VariableError
from xlevda.surrogates.config import LDNetConfig
from xlevda.surrogates.frames import TensorFrameSource
from xlevda.surrogates.initial_state import trajectory_loss
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.masking import mean_square
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
    with pytest.raises(VariableError, match="no gaps"):
        _fit(with_gaps, "linear", missing="mask")


def _tiny():
    torch.manual_seed(0)
    schema = SurrogateSchema.minimal(3)
    model = LDNetModel(LDNetConfig(latent_dim=2, dynamics_width=4, dynamics_depth=1), schema)
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
