"""The polynomial LDNet: its vector field, its closed-form fit (operator inference), files,
quality report and assimilation."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
import torch

import xlevda
from tests.conftest import make_runs
from xlevda.errors import ConfigError
from xlevda.methods import LEVDA
from xlevda.run import RunOptions
from xlevda.surrogates.config import (
    LDNetConfig,
    LinearDynamicsConfig,
    PolynomialDynamicsConfig,
    config_from_dict,
    config_to_dict,
)
from xlevda.surrogates.decoder_configs import CosineDecoderConfig
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.linear import fit_linear
from xlevda.surrogates.opinf import fit_polynomial, step_features
from xlevda.surrogates.polynomial import PolynomialField, monomials, pair_products
from xlevda.surrogates.quality import stability
from xlevda.surrogates.schema import Affine, SurrogateSchema

F64 = torch.float64


def schema2(n_frames: int) -> SurrogateSchema:
    """SurrogateSchema.minimal with two parameters."""
    return dataclasses.replace(
        SurrogateSchema.minimal(n_frames),
        params=("a", "b"),
        param_attrs=({}, {}),
        param_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        param_range=((-1.0, 1.0), (-1.0, 1.0)),
    )


def random_field(seed=0, **kw) -> PolynomialField:
    field = PolynomialField(5, 2, n_centres=3, dt=0.25, **kw).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=F64))
    return field


# ----------------------------------------------------------------------------- the field


def test_field_is_the_documented_polynomial():
    """F(s, u) = linear field + sum_alpha u^alpha (N_alpha c + kappa b_alpha) + H pairs(c)."""
    field = random_field(param_degree=2, quadratic_modes=3)
    gen = torch.Generator().manual_seed(1)
    s, u = torch.randn(7, 5, generator=gen, dtype=F64), torch.randn(7, 2, generator=gen, dtype=F64)
    c, kappa = s[:, :-1], s[:, -1:]
    m = torch.stack([u[:, 0], u[:, 1], u[:, 0] ** 2, u[:, 0] * u[:, 1], u[:, 1] ** 2], -1)
    n_blocks = field.bilinear.T.reshape(5, 4, 4)  # (alpha, j, i)
    bilinear = sum(m[:, a, None] * (c @ n_blocks[a]) for a in range(5))
    pairs = torch.stack([c[:, i] * c[:, j] for i in range(3) for j in range(i, 3)], -1)
    drift = field.linear(s, u)[:, :-1] + bilinear + kappa * (m @ field.forcing)
    drift = drift + pairs @ field.quadratic.T
    out = field(s, u)
    torch.testing.assert_close(out[:, :-1], drift, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out[:, -1:], (1 - kappa) / 0.25, rtol=0, atol=0)


def test_field_first_step_is_the_impulse_and_broadcasts():
    """From s = 0 (clock 0) every polynomial term vanishes: the step is the linear field's."""
    field = random_field(param_degree=1, quadratic_modes=4)
    u = torch.randn(3, 2, dtype=F64)
    s0 = torch.zeros(3, 5, dtype=F64)
    torch.testing.assert_close(field(s0, u), field.linear(s0, u), rtol=0, atol=0)
    assert field(torch.zeros(6, 3, 5, dtype=F64), u[0]).shape == (6, 3, 5)


def test_field_gradcheck():
    field = random_field(param_degree=2, quadratic_modes=2)
    s = torch.randn(2, 5, dtype=F64, requires_grad=True)
    u = torch.randn(2, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(field, (s, u))


def test_features_match_the_field():
    """step_features(c, u) @ W is the field's Euler increment for the W the fit writes."""
    field = random_field(param_degree=2, quadratic_modes=3)
    c, u = torch.randn(4, 4, dtype=F64), torch.randn(4, 2, dtype=F64)
    s = torch.cat([c, torch.ones(4, 1, dtype=F64)], -1)
    coef = torch.cat(
        [
            field.linear.A.T,
            field.bilinear.T,
            field.linear.a[None],
            field.forcing,
            field.quadratic.T,
        ]
    )
    increment = step_features(c, u, 2, 3) @ coef
    torch.testing.assert_close(increment, field(s, u)[:, :-1], rtol=1e-12, atol=1e-12)
    assert monomials(u, 0).shape == (4, 0) and pair_products(c, 0).shape == (4, 0)


# ----------------------------------------------------------------------------- exact fit


def true_step(c, u, coef):
    """The synthetic latent model: c + Phi(c, u) @ coef (degree 1, quadratic in all 3)."""
    return c + step_features(c, u, 1, 3) @ coef


def exact_runs(n_runs=14, n_frames=8, seed=0):
    """Fields in a 3-mode span of the cosine series on 16 points whose coefficients follow
    a polynomial latent step with all terms (A, N, H, B, a)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.arange(16, dtype=F64)[:, None] + 0.5) / 16
    feats = torch.cos(math.pi * x * torch.arange(6, dtype=F64))  # (16, 6)
    mean_c, mode_c = (
        torch.randn(6, generator=gen, dtype=F64),
        torch.randn(6, 3, generator=gen, dtype=F64),
    )
    n_f = step_features(torch.zeros(3, dtype=F64), torch.zeros(2, dtype=F64), 1, 3).shape[-1]
    coef = 0.04 * torch.randn(n_f, 3, generator=gen, dtype=F64)
    u = torch.rand(n_runs, 2, generator=gen, dtype=F64) * 2 - 1
    c = [0.5 * torch.randn(n_runs, 3, generator=gen, dtype=F64)]
    for _ in range(n_frames - 1):
        c.append(true_step(c[-1], u, coef))
    c = torch.stack(c, 1)
    values = ((c @ mode_c.T + mean_c) @ feats.T).unsqueeze(-1)  # (N, T, 16, 1)
    return x, u, values, coef, (feats, mean_c, mode_c)


def exact_config(n_fit, refit=True) -> LDNetConfig:
    dyn = PolynomialDynamicsConfig(
        n_centres=n_fit,
        refit=refit,
        param_degree=1,
        quadratic_modes=3,
        regularization=(0.0,),
        param_regularization=(0.0,),
        quadratic_regularization=(0.0,),
    )
    return LDNetConfig(
        latent_dim=4, learnable_dt=False, dynamics=dyn, decoder=CosineDecoderConfig(n_terms=6)
    )


@pytest.mark.parametrize("refit", [True, False])
def test_fit_recovers_the_polynomial_step_exactly(refit):
    """On data following A, N, H, B, a in the modes' span the fitted step equals the true
    one to round-off, as a map of fields: at random states and parameters (not only the
    training ones), encode the field, step the model, decode, against the true step."""
    x, u, values, coef, (feats, mean_c, mode_c) = exact_runs()
    n_fit = 14 if refit else 10
    model = LDNetModel(exact_config(n_fit, refit), schema2(8), dtype=F64)
    report = fit_polynomial(model, (u[:10], x, values[:10]), (u[10:], x, values[10:]))
    assert report["mode_projection_error"] < 1e-12 and report["step_residual"] < 1e-6
    gen = torch.Generator().manual_seed(5)
    c, v = torch.randn(20, 3, generator=gen, dtype=F64), torch.rand(20, 2, generator=gen) * 2 - 1
    v = v.double()
    basis = model.decoder.features(x) @ model.decoder.weight[0].T  # (16, modes, clock, mean)
    fields = (c @ mode_c.T + mean_c) @ feats.T  # (20, 16)
    latent = torch.linalg.lstsq(basis[:, :3], (fields - basis[:, -1]).T).solution.T
    s = torch.cat([latent, torch.ones(20, 1, dtype=F64)], -1)
    stepped = s + model.dt * model.vector_field(s, v)
    expected = (true_step(c, v, coef) @ mode_c.T + mean_c) @ feats.T
    scale = float(expected.abs().max())
    decoded = model.decode(stepped, x)[..., 0]
    torch.testing.assert_close(decoded, expected, rtol=0, atol=1e-10 * scale)  # 1e-14 seen


def test_fit_without_polynomial_terms_is_the_linear_fit():
    """param_degree=0, no quadratic terms and no ridge: the linear fit's model (DMD)."""
    x, u, values, _, _ = exact_runs(seed=2)
    dyn = PolynomialDynamicsConfig(
        n_centres=14, param_degree=0, quadratic_modes=0, regularization=(0.0,)
    )
    cfg = LDNetConfig(
        latent_dim=4, learnable_dt=False, dynamics=dyn, decoder=CosineDecoderConfig(n_terms=6)
    )
    poly = LDNetModel(cfg, schema2(8), dtype=F64)
    fit_polynomial(poly, (u[:10], x, values[:10]), (u[10:], x, values[10:]))
    linear = LDNetModel(
        dataclasses.replace(cfg, dynamics=LinearDynamicsConfig(n_centres=14)), schema2(8), dtype=F64
    )
    fit_linear(linear, (u[:10], x, values[:10]), (u[10:], x, values[10:]))
    torch.testing.assert_close(poly.decoder.weight, linear.decoder.weight, rtol=0, atol=1e-12)
    for name, value in linear.dynamics.state_dict().items():
        torch.testing.assert_close(poly.dynamics.linear.state_dict()[name], value)
    assert poly.dynamics.bilinear.numel() == 0 and poly.dynamics.quadratic.numel() == 0


def test_fit_chooses_ridge_on_validation_rollouts():
    """The chosen ridge pair has the lowest validation rollout error of the grid."""
    x, u, values, _, _ = exact_runs(seed=1)
    noisy = values + 0.02 * torch.randn(values.shape, generator=torch.Generator().manual_seed(3))
    grid = (1e-8, 1e-3, 1.0)
    fixed = {"param_regularization": (1e-6,), "quadratic_regularization": (1e-2,)}
    errors = {}
    for lam in grid:
        dyn = PolynomialDynamicsConfig(
            n_centres=10,
            refit=False,
            param_degree=1,
            quadratic_modes=2,
            regularization=(lam,),
            **fixed,
        )
        cfg = LDNetConfig(
            latent_dim=4, learnable_dt=False, dynamics=dyn, decoder=CosineDecoderConfig(n_terms=6)
        )
        model = LDNetModel(cfg, schema2(8), dtype=F64)
        rep = fit_polynomial(model, (u[:10], x, noisy[:10]), (u[10:], x, noisy[10:]))
        errors[lam] = min(rep["validation_rollout_error"], math.inf)
    dyn = PolynomialDynamicsConfig(
        n_centres=10, refit=False, param_degree=1, quadratic_modes=2, regularization=grid, **fixed
    )
    cfg = LDNetConfig(
        latent_dim=4, learnable_dt=False, dynamics=dyn, decoder=CosineDecoderConfig(n_terms=6)
    )
    model = LDNetModel(cfg, schema2(8), dtype=F64)
    rep = fit_polynomial(model, (u[:10], x, noisy[:10]), (u[10:], x, noisy[10:]))
    assert rep["ridge"] == min(errors, key=errors.get)
    assert rep["validation_rollout_error"] == pytest.approx(min(errors.values()), rel=1e-9)


def test_fit_rejects_other_configs():
    x, u, values, _, _ = exact_runs()
    cfg = LDNetConfig(
        latent_dim=4,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(n_centres=14),
        decoder=CosineDecoderConfig(n_terms=6),
    )
    model = LDNetModel(cfg, schema2(8))
    with pytest.raises(ConfigError, match="fit_polynomial needs"):
        fit_polynomial(model, (u[:10], x, values[:10]), (u[10:], x, values[10:]))
    model = LDNetModel(exact_config(12), schema2(8))
    with pytest.raises(ConfigError, match=r"PolynomialDynamicsConfig.n_centres is 12"):
        fit_polynomial(model, (u[:10], x, values[:10]), (u[10:], x, values[10:]))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"param_degree": -1}, r"PolynomialDynamicsConfig.param_degree must be an integer >= 0"),
        ({"param_degree": 1.5}, r"PolynomialDynamicsConfig.param_degree must be an integer"),
        ({"quadratic_modes": -2}, r"PolynomialDynamicsConfig.quadratic_modes must be an integer"),
        ({"param_regularization": 1.0}, r"PolynomialDynamicsConfig.param_regularization must be"),
        ({"regularization": ()}, r"PolynomialDynamicsConfig.regularization must be a non-empty"),
        ({"regularization": (-1.0,)}, r"PolynomialDynamicsConfig.regularization\[...\] must be"),
        (
            {"quadratic_regularization": (math.nan,)},
            r"PolynomialDynamicsConfig.quadratic_regularization\[...\] must be",
        ),
        ({"n_centres": 0}, r"PolynomialDynamicsConfig.n_centres must be an integer >= 1"),
        ({"widths": ()}, r"PolynomialDynamicsConfig.widths must be a non-empty tuple"),
        ({"refit": 1}, r"PolynomialDynamicsConfig.refit must be a bool, got 1"),
        ({"kind": "linear"}, r"PolynomialDynamicsConfig.kind must be one of \('polynomial',\)"),
    ],
)
def test_polynomial_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PolynomialDynamicsConfig(**kwargs)


def test_ldnet_config_with_polynomial_dynamics_checks():
    dyn = PolynomialDynamicsConfig(n_centres=3, quadratic_modes=4)
    with pytest.raises(ConfigError, match="learnable_dt must be False with PolynomialDynamics"):
        LDNetConfig(latent_dim=5, dynamics=dyn, learnable_dt=True)
    with pytest.raises(ConfigError, match="quadratic_modes must be at most latent_dim - 1 = 3"):
        LDNetModel(
            LDNetConfig(latent_dim=4, learnable_dt=False, dynamics=dyn), SurrogateSchema.minimal(3)
        )
    with pytest.raises(ConfigError, match=r"PolynomialDynamicsConfig.n_centres is None"):
        LDNetModel(
            LDNetConfig(latent_dim=5, learnable_dt=False, dynamics=PolynomialDynamicsConfig()),
            SurrogateSchema.minimal(3),
        )
    with pytest.raises(
        ConfigError, match=r"dynamics.kind must be one of \('linear', 'polynomial'\)"
    ):
        config_from_dict({"learnable_dt": False, "dynamics": {"kind": "cubic"}})


def test_config_dict_round_trip_and_older_linear_dicts():
    cfg = LDNetConfig(
        latent_dim=6,
        learnable_dt=False,
        dynamics=PolynomialDynamicsConfig(
            param_degree=3, quadratic_modes=2, regularization=(0.0, 1.0)
        ),
        decoder=CosineDecoderConfig(n_terms=5),
    )
    assert config_from_dict(json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    old = config_to_dict(LDNetConfig(learnable_dt=False, dynamics=LinearDynamicsConfig()))
    del old["dynamics"]["kind"]  # files written before the polynomial dynamics
    assert config_from_dict(old).dynamics == LinearDynamicsConfig()


# ---------------------------------------------------------------------- LDNet.fit, files, LEVDA


POLY = LDNetConfig(
    latent_dim=7,
    learnable_dt=False,
    dynamics=PolynomialDynamicsConfig(param_degree=2, quadratic_modes=2),
    decoder=CosineDecoderConfig(n_terms=6),
    train=xlevda.TrainConfig(validation_fraction=0.25),
)


@pytest.fixture(scope="module")
def archive():
    return make_runs(n_runs=10, n_frames=6)


@pytest.fixture(scope="module")
def fitted(archive):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the spectral radius, checked below
        return xlevda.LDNet.fit(archive, ["a", "b"], POLY, progress=False)


def test_ldnet_fit_polynomial_report_and_quality(fitted):
    model = fitted
    assert isinstance(model.dynamics, PolynomialField) and model.history is None
    assert set(model.metadata["polynomial_fit"]) >= {"ridge", "param_ridge", "quadratic_ridge"}
    assert model.config.dynamics.n_centres == 10
    q = model.quality
    assert q.refitted and q.n_heldout_runs == 2 and q.radius_of.startswith("latent step Jacobian")
    assert math.isfinite(q.spectral_radius) and "latent step Jacobian" in q.summary()
    assert stability(model) == {"spectral_radius": q.spectral_radius, "radius_of": q.radius_of}


def test_polynomial_radius_is_the_step_jacobian_and_warns(fitted):
    """Without quadratic terms: the radius of I + dt (A + sum_alpha u^alpha N_alpha); above 1
    LDNet.fit warns, naming what the radius is of."""
    field = PolynomialField(3, 1, n_centres=2, dt=0.5, param_degree=1, quadratic_modes=0)
    cfg = LDNetConfig(
        latent_dim=3,
        learnable_dt=False,
        dt0=0.5,
        dynamics=PolynomialDynamicsConfig(n_centres=2, param_degree=1),
        decoder=CosineDecoderConfig(n_terms=2),
    )
    model = LDNetModel(cfg, SurrogateSchema.minimal(3))
    field = model.dynamics
    with torch.no_grad():
        field.linear.A.copy_(torch.diag(torch.tensor([0.2, -0.4])))
        field.bilinear.copy_(torch.diag(torch.tensor([1.0, 0.0])))
        field.linear.centres.copy_(torch.tensor([[-1.0], [0.5]]))
    # the largest over u in {-1, 0.5} of 1 + 0.5 (0.2 + u), |1 + 0.5 * (-0.4)|
    assert stability(model)["spectral_radius"] == pytest.approx(1.35, abs=1e-6)
    report = xlevda.surrogates.fitreport.FitReport(
        ("x",), 2, ((0.1, 0.2),), (0.1,), (1,), 1.0, 1.35, radius_of=stability(model)["radius_of"]
    )
    with pytest.warns(UserWarning, match="latent step Jacobian .* spectral radius 1.3500 > 1"):
        xlevda.surrogates.quality.warn_if_unstable(report)


def test_polynomial_model_saves_and_loads(fitted, tmp_path):
    path = tmp_path / "poly.pt"
    fitted.save(path)
    loaded = xlevda.load_surrogate(path)
    assert loaded.config == fitted.config and loaded.quality == fitted.quality
    assert loaded.metadata["polynomial_fit"] == fitted.metadata["polynomial_fit"]
    params = {"a": 0.1, "b": 1.2}
    np.testing.assert_array_equal(
        loaded.predict(params).eta.values, fitted.predict(params).eta.values
    )


def test_polynomial_fit_tracks_the_archive(archive, fitted):
    """The fitted runs are reproduced (the drifting bump: parametric advection)."""
    fc = fitted.predict({"a": archive.a.values, "b": archive.b.values})
    truth = archive.eta.values
    assert np.linalg.norm(fc.eta.values - truth) / np.linalg.norm(truth) < 0.1


def test_levda_runs_on_a_polynomial_surrogate(archive, fitted):
    """The general (nonlinear) path: LEVDA assimilates close to the truth."""
    truth = archive.isel(run=0)
    obs = truth[["eta"]].isel(lat=slice(None, None, 2), lon=slice(None, None, 2))
    obs = obs.assign(eta_std=xr_full_like(obs.eta, 0.02))
    tgt = truth.drop_vars(["eta", "u"])
    out = tgt.levda.assimilate(
        obs, fitted, LEVDA(window=3), run=RunOptions(members=8, dtype="float64")
    )
    assert np.isfinite(out.eta.values).all()
    # not taken for linear: in the first window the secant start (exact only where the
    # decoded observations match the secant prediction) is not accepted, every member iterates
    assert (out.window_n_iter.isel(window=0) > 0).all() and out.window_converged.all()
    err = float(np.linalg.norm(out.eta.mean("member").values - truth.eta.values))
    assert err / float(np.linalg.norm(truth.eta.values)) < 0.2


def xr_full_like(da, value):
    import xarray as xr

    return xr.full_like(da, value)
