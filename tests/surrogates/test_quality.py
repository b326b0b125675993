"""The quality report of every fit: numbers against an independent computation, storage,
the spectral-radius warning, fits without held-out runs and files without a report."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda
from tests.conftest import make_runs
from xlevda.errors import ConfigError
from xlevda.metrics import relative_rmse
from xlevda.pretrained import available, load_pretrained
from xlevda.surrogates.config import LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import CosineDecoderConfig
from xlevda.surrogates.fitreport import FitReport
from xlevda.surrogates.quality import step_spectral_radius

# The report compares float32 model outputs and float32-rounded normalized targets
# (the training frames) with the float64 archive: its relative errors differ from the
# float64 reference by a few float32 roundings of |truth| / |truth| (eps 6e-8), far below
# this tolerance, while any other definition (normalized units, per-run means, one frame
# off) changes them by orders of magnitude more.
ATOL = 1e-5

GRADIENT = xlevda.LDNetConfig(
    latent_dim=4,
    decoder=xlevda.SeparableDecoderConfig(n_basis=8, basis_width=16, coef_width=16),
    train=xlevda.TrainConfig(epochs=3, validation_fraction=0.25),
)
LINEAR_HELDOUT = xlevda.LDNetConfig(
    latent_dim=5,
    learnable_dt=False,
    dynamics=LinearDynamicsConfig(refit=False),
    decoder=CosineDecoderConfig(n_terms=6),
    train=xlevda.TrainConfig(validation_fraction=0.25),
)


@pytest.fixture(scope="module")
def runs():
    return make_runs(n_runs=8, n_frames=6)


def reference_errors(model, runs, heldout):
    """Per variable and frame: ||predict - truth|| over the held-out runs and the grid,
    divided by the RMS over frames of ||truth||, each run predicted on its own from its
    parameters (a loop over ``predict``)."""
    sq_err = {v: np.zeros(runs.sizes["time"]) for v in model.schema.variables}
    sq_true = {v: np.zeros(runs.sizes["time"]) for v in model.schema.variables}
    preds, truths = [], []
    for i in heldout:
        run = runs.isel(run=i)
        fc = model.predict({p: float(run[p]) for p in model.schema.params})
        for v in model.schema.variables:
            diff = fc[v].values - run[v].values
            sq_err[v] += (diff**2).sum(axis=(1, 2))
            sq_true[v] += (run[v].values ** 2).sum(axis=(1, 2))
        preds.append(fc.drop_vars(list(model.schema.params), errors="ignore"))
        truths.append(run[list(model.schema.variables)].drop_vars(["run", "a", "b"]))
    loop = {v: np.sqrt(sq_err[v] / sq_true[v].mean()) for v in sq_err}
    # the same through the package's metric: per frame, norms over runs and space, scaled
    # by each frame's truth norm relative to the RMS over frames
    pred, truth = xr.concat(preds, "run"), xr.concat(truths, "run")
    norm = np.sqrt((truth**2).sum(("run", "lat", "lon")))
    rms = np.sqrt((norm**2).mean("time"))
    metric = relative_rmse(pred, truth, dim=("run", "lat", "lon")) * norm / rms
    return loop, metric


@pytest.mark.parametrize("config", [GRADIENT, LINEAR_HELDOUT], ids=["gradient", "linear"])
def test_report_equals_a_loop_over_predict(runs, config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the linear fit may be unstable here
        model = xlevda.LDNet.fit(runs, ["a", "b"], config, progress=False)
    q = model.quality
    order = np.random.default_rng(config.train.seed).permutation(8)
    assert q.heldout_runs == tuple(sorted(order[:2].tolist()))
    assert q.n_heldout_runs == 2 and q.n_frames == 6 and q.variables == ("eta", "u")
    assert not q.refitted
    loop, metric = reference_errors(model, runs, q.heldout_runs)
    for c, v in enumerate(q.variables):
        np.testing.assert_allclose(q.frame_errors[c], loop[v], rtol=0, atol=ATOL)
        np.testing.assert_allclose(q.frame_errors[c], metric[v].values, rtol=0, atol=ATOL)
        assert q.mean_errors[c] == pytest.approx(np.mean(q.frame_errors[c]), abs=1e-15)
        assert q.worst_errors[c] == max(q.frame_errors[c])
        assert q.frame_errors[c][q.worst_frames[c]] == q.worst_errors[c]
    assert 0 < q.seconds < 600
    ds = q.to_dataset(model.frame_times())
    np.testing.assert_array_equal(ds.u.values, q.frame_errors[1])
    np.testing.assert_array_equal(ds.time.values, model.frame_times())
    assert ds.attrs["n_heldout_runs"] == 2


def test_overall_error_pools_all_frames(runs):
    model = xlevda.LDNet.fit(runs, ["a", "b"], GRADIENT, progress=False)
    q = model.quality
    for c, v in enumerate(q.variables):
        num = den = 0.0
        for i in q.heldout_runs:
            run = runs.isel(run=i)
            fc = model.predict({"a": float(run.a), "b": float(run.b)})
            num += float(((fc[v].values - run[v].values) ** 2).sum())
            den += float((run[v].values ** 2).sum())
        assert q.overall_errors[c] == pytest.approx(np.sqrt(num / den), abs=ATOL)
    assert q.spectral_radius is None  # nonlinear latent dynamics


def test_refitted_linear_model_is_measured_without_its_heldout_runs(runs):
    refit = xlevda.LDNetConfig(
        latent_dim=5,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(),
        decoder=CosineDecoderConfig(n_terms=6),
        train=xlevda.TrainConfig(validation_fraction=0.25),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = xlevda.LDNet.fit(runs, ["a", "b"], refit, progress=False)
        alone = xlevda.LDNet.fit(runs, ["a", "b"], LINEAR_HELDOUT, progress=False)
    q = model.quality
    assert q.refitted and "refitted on all runs" in q.note
    # the errors are those of the fit on the training runs alone, not of the returned model
    np.testing.assert_allclose(q.frame_errors, alone.quality.frame_errors, rtol=0, atol=1e-12)
    in_sample, _ = reference_errors(model, runs, q.heldout_runs)
    assert np.mean(in_sample["eta"]) < q.mean_errors[0]
    # the spectral radius is the returned model's
    assert q.spectral_radius == step_spectral_radius(model)
    assert q.spectral_radius == pytest.approx(
        model.metadata["linear_fit"]["spectral_radius"], rel=1e-5
    )


def growing_runs(rho: float, n_runs: int = 10, n_frames: int = 6) -> xr.Dataset:
    """Frames ``amp(u) * rho**k * h(x, y)``: one mode, evolving by ``c_{k+1} = rho c_k + m``
    about the mean exactly, so the fitted latent step has the single eigenvalue ``rho``."""
    u = np.linspace(0.5, 1.5, n_runs)
    y, x = np.linspace(0, 1, 7), np.linspace(0, 1, 8)
    h = np.exp(-((x[None] - 0.4) ** 2 + (y[:, None] - 0.6) ** 2) / 0.1)
    k = np.arange(n_frames)
    field = (u**2)[:, None, None, None] * (rho**k)[None, :, None, None] * h
    return xr.Dataset(
        {"c": (("run", "time", "y", "x"), field)},
        coords={"time": k.astype(float), "y": y, "x": x, "u": ("run", u)},
    )


@pytest.mark.parametrize("rho", [1.1, 0.9])
def test_spectral_radius_warning_fires_only_for_an_unstable_fit(rho):
    config = xlevda.LDNetConfig(
        latent_dim=2,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(),
        decoder=CosineDecoderConfig(n_terms=4),
        train=xlevda.TrainConfig(validation_fraction=0.2),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = xlevda.LDNet.fit(growing_runs(rho), ["u"], config, progress=False)
    unstable = [w for w in caught if "spectral radius" in str(w.message)]
    # the float32 weights hold the exact eigenvalue rho to float32 precision
    assert model.quality.spectral_radius == pytest.approx(rho, abs=1e-5)
    assert model.quality.unstable == (rho > 1)
    assert len(unstable) == (1 if rho > 1 else 0)
    if unstable:
        assert unstable[0].category is UserWarning
        assert unstable[0].filename == __file__  # points at the caller's fit
        assert "UNSTABLE" in model.quality.summary()


def test_no_heldout_runs_says_so(runs):
    config = xlevda.LDNetConfig(
        latent_dim=3,
        decoder=xlevda.SeparableDecoderConfig(n_basis=4, basis_width=8, coef_width=8),
        train=xlevda.TrainConfig(epochs=1, validation_fraction=0.0),
    )
    model = xlevda.LDNet.fit(runs, ["a", "b"], config, progress=False)
    q = model.quality
    assert q.n_heldout_runs == 0
    assert q.frame_errors is None and q.overall_errors is None and q.mean_errors is None
    assert "no held-out runs" in q.note and "no held-out runs" in q.summary()
    assert model.history.val_loss == []  # nothing was validated on
    ds = q.to_dataset()
    assert ds.sizes["frame"] == 6 and bool(ds.eta.isnull().all())


def test_report_round_trips_through_the_file(runs, tmp_path):
    model = xlevda.LDNet.fit(runs, ["a", "b"], GRADIENT, progress=False)
    model.save(tmp_path / "m.pt")
    loaded = xlevda.LDNet.load(tmp_path / "m.pt")
    assert loaded.quality == model.quality
    no_report = FitReport(("x",), 3, None, None, (), 1.0, note="no held-out runs")
    bad = FitReport(("x",), 2, ((0.0, float("inf")),), (float("nan"),), (3,), 1.0, 1.2)
    for report in (no_report, bad):
        model.quality = report
        model.save(tmp_path / "r.pt")
        back = xlevda.LDNet.load(tmp_path / "r.pt").quality
        assert back.to_dict().keys() == report.to_dict().keys()
        assert back.summary() == report.summary()


def test_files_without_a_report_load_with_quality_none(runs, tmp_path):
    for name in set(available()) - {"tsunami"}:  # these shipped surrogates predate the report
        assert load_pretrained(name).quality is None
    model = xlevda.LDNet.fit(runs, ["a", "b"], GRADIENT, progress=False)
    model.save(tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["quality"], payload["sha256"]  # as written before the report and checksum
    torch.save(payload, tmp_path / "old.pt")
    old = xlevda.LDNet.load(tmp_path / "old.pt")
    assert old.quality is None
    xr.testing.assert_identical(
        old.predict({"a": 0.1, "b": 1.0}), model.predict({"a": 0.1, "b": 1.0})
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frame_errors": None}, "all be given"),
        ({"frame_errors": ((0.1,),)}, "n_frames=2"),
        ({"n_frames": 0}, "n_frames must be"),
        ({"seconds": -1.0}, "seconds must be"),
    ],
)
def test_inconsistent_reports_are_refused(kwargs, match):
    fields = {
        "variables": ("eta",),
        "n_frames": 2,
        "frame_errors": ((0.1, 0.2),),
        "overall_errors": (0.15,),
        "heldout_runs": (1,),
        "seconds": 1.0,
        **kwargs,
    }
    with pytest.raises(ConfigError, match=match):
        FitReport(**fields)
    with pytest.raises(ConfigError, match="needs a note"):
        FitReport(("eta",), 2, None, None, (), 1.0)
