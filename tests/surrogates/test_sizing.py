"""The default LDNet: closed form, polynomial, sizes from the archive, per-parameter widths."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import xlevda
from tests.conftest import make_runs
from xlevda.errors import ConfigError
from xlevda.surrogates.compression import gaussian_kernel
from xlevda.surrogates.config import (
    LDNetConfig,
    LinearDynamicsConfig,
    PolynomialDynamicsConfig,
    config_from_dict,
    config_to_dict,
)
from xlevda.surrogates.decoder_configs import (
    MAX_COSINE_TERMS,
    CosineDecoderConfig,
    MLPDecoderConfig,
)
from xlevda.surrogates.sizing import cosine_terms, modes_for


def test_default_config_is_the_closed_form_polynomial_ldnet():
    cfg = LDNetConfig()
    assert cfg.dynamics == PolynomialDynamicsConfig() and cfg.decoder == CosineDecoderConfig()
    assert cfg.latent_dim is None and cfg.decoder.n_terms is None and cfg.learnable_dt is False
    assert cfg.dynamics.kernel == "per_parameter"
    # a neural decoder means gradient training, with the previous defaults
    mlp = LDNetConfig(decoder=MLPDecoderConfig())
    assert mlp.dynamics is None and mlp.latent_dim == 8 and mlp.learnable_dt is True
    # dynamics without a decoder get the cosine decoder
    assert LDNetConfig(dynamics=LinearDynamicsConfig()).decoder == CosineDecoderConfig()
    for c in (cfg, mlp):
        assert config_from_dict(config_to_dict(c)) == c


def test_dicts_without_the_kernel_option_are_isotropic():
    """Files written before per-parameter widths: one width, the shape their weights have."""
    old = config_to_dict(LDNetConfig(dynamics=PolynomialDynamicsConfig()))
    del old["dynamics"]["kernel"]
    assert config_from_dict(old).dynamics.kernel == "isotropic"
    with pytest.raises(ConfigError, match=r"PolynomialDynamicsConfig.kernel must be one of"):
        PolynomialDynamicsConfig(kernel="ard")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"mode_tolerance": 0.0}, r"mode_tolerance must be a finite number in \(0.0, 1.0\)"),
        ({"mode_tolerance": 1.0}, r"mode_tolerance must be a finite number in \(0.0, 1.0\)"),
        ({"max_modes": 0}, r"max_modes must be an integer >= 1"),
    ],
)
def test_size_options_are_validated(kw, match):
    with pytest.raises(ConfigError, match=match):
        PolynomialDynamicsConfig(**kw)


def test_modes_for_keeps_the_fewest_modes_within_the_tolerance():
    rng = np.random.default_rng(0)
    scales = np.array([10.0, 3.0, 1.0, 0.1, 0.01])
    w = torch.as_tensor(rng.normal(size=(400, 5)) * scales)
    gram, total = w.T @ w, w.sum(0)
    energy = torch.linalg.eigvalsh(gram - 400 * torch.outer(total / 400, total / 400)).flip(0)
    for k in range(1, 5):
        tol = math.sqrt(float(energy[k:].sum() / energy.sum())) * 1.0001
        assert modes_for(gram, total, 400, tol, 10) == k
        assert modes_for(gram, total, 400, tol, k - 1 or 1) == (k - 1 or 1)  # the cap


def test_cosine_terms_on_grids_and_scattered_points():
    grid = torch.cartesian_prod(torch.linspace(-1, 1, 9), torch.linspace(-1, 1, 50))
    assert cosine_terms(grid, 1) == 9  # the shorter axis
    big = torch.cartesian_prod(torch.linspace(-1, 1, 60), torch.linspace(-1, 1, 60))
    assert cosine_terms(big, 1) == MAX_COSINE_TERMS
    assert cosine_terms(big, 8) == 22  # 8 channels x 22^2 <= 4096 compressed coordinates
    scattered = torch.rand(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = cosine_terms(scattered, 1)
    assert 2 <= n <= 17 and n**2 <= 300
    with pytest.raises(ConfigError, match=r"fewer than 2 cosine terms.*MLPDecoderConfig"):
        cosine_terms(torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), 1)


def test_per_parameter_widths_ignore_a_parameter_the_first_frame_does_not_depend_on():
    """make_runs' first frame depends on ``a`` only: its validation error is at most the
    isotropic kernel's, and the width of ``b`` grows past that of ``a``."""
    runs = make_runs(n_runs=30, n_frames=3, ny=6, nx=16)
    errors, widths = {}, {}
    for kernel in ("isotropic", "per_parameter"):
        config = LDNetConfig(
            latent_dim=10,
            dynamics=LinearDynamicsConfig(kernel=kernel, refit=False),
            decoder=CosineDecoderConfig(n_terms=6),
            train=xlevda.TrainConfig(validation_fraction=0.3),
        )
        model = xlevda.LDNet.fit(runs, ["a", "b"], config, progress=False)
        report = model.metadata["linear_fit"]
        errors[kernel] = report["first_frame_validation_error"]
        widths[kernel] = report["kernel_width"]
        np.testing.assert_allclose(model.dynamics.width.tolist(), widths[kernel], rtol=1e-6)
    assert errors["per_parameter"] < 0.5 * errors["isotropic"], errors
    assert widths["per_parameter"][1] > 2 * widths["per_parameter"][0], widths
    # the kernel of per-parameter widths is the isotropic one of the rescaled parameters
    u = torch.rand(7, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = torch.tensor([0.3, 2.0], dtype=torch.float64)
    torch.testing.assert_close(gaussian_kernel(u, u, w), gaussian_kernel(u / w, u / w, 1.0))


def test_default_fit_chooses_its_sizes_and_says_so():
    runs = make_runs(n_runs=12, n_frames=6, ny=10, nx=12)
    t0 = time.perf_counter()
    model = xlevda.LDNet.fit(runs, ["a", "b"], progress=False)
    assert time.perf_counter() - t0 < 30  # seconds on a loaded 2-core CPU; typically ~1
    cfg = model.config
    assert isinstance(cfg.dynamics, PolynomialDynamicsConfig) and model.history is None
    assert cfg.decoder.n_terms == 10  # the shorter axis
    assert 2 <= cfg.latent_dim <= 12 * 6  # modes + the clock, at most the frames span
    note = model.quality.note
    assert f"n_terms=10, latent_dim={cfg.latent_dim}" in note and "sizes chosen" in note
    assert "sizes chosen" in model.quality.summary()
    assert model.metadata["polynomial_fit"]["first_frame_validation_error"] < 0.1
    assert max(model.quality.overall_errors) < 0.1, model.quality.summary()
    # given sizes are kept and not reported as chosen
    fixed = LDNetConfig(
        latent_dim=5,
        dynamics=PolynomialDynamicsConfig(),
        decoder=CosineDecoderConfig(n_terms=6),
        train=xlevda.TrainConfig(epochs=5, lr=0.1),
    )
    kept = xlevda.LDNet.fit(runs, ["a", "b"], fixed, progress=False)
    assert kept.config.latent_dim == 5 and kept.config.decoder.n_terms == 6
    assert "sizes chosen" not in kept.quality.note
    # training options the closed form does not use are named, not silently dropped
    assert "no gradient descent): TrainConfig epochs=5, lr=0.1" in kept.quality.note


def test_learned_initial_states_need_a_neural_decoder():
    from xlevda.surrogates.config import LearnedInitialState

    with pytest.raises(ConfigError, match=r"initial_state must be None with.*MLPDecoderConfig"):
        LDNetConfig(initial_state=LearnedInitialState())


def _train_args(*extra: str):
    from xlevda.cli import build_parser

    return build_parser().parse_args(["train", "runs.nc", "--params", "a", "-o", "m.pt", *extra])


def test_command_line_defaults_are_the_closed_form_ones():
    from xlevda._train_args import train_config

    assert _train_args().decoder == "polynomial" and train_config(_train_args()) == LDNetConfig()
    sized = train_config(_train_args("--latent-dim", "12", "--cosine-terms", "8"))
    assert sized.latent_dim == 12 and sized.decoder.n_terms == 8
    assert train_config(_train_args("--latent-dim", "auto")).latent_dim is None
    mlp = train_config(_train_args("--decoder", "mlp", "--epochs", "3"))
    assert mlp == LDNetConfig(
        decoder=MLPDecoderConfig(), train=xlevda.TrainConfig(epochs=3)
    )  # the gradient-trained LDNet's Python defaults, latent_dim 8 included
    with pytest.raises(SystemExit):
        _train_args("--latent-dim", "many")


def test_the_default_refuses_a_global_grid_and_names_the_options():
    import xarray as xr

    lat, lon = np.linspace(-78.75, 78.75, 8), np.arange(0, 360, 45.0)
    a = np.random.default_rng(0).uniform(0, 1, 6)
    values = np.cos(np.deg2rad(lat))[None, None, :, None] * (
        1 + a[:, None, None, None] * np.arange(3)[None, :, None, None]
    )
    ds = xr.Dataset(
        {"h": (("run", "time", "lat", "lon"), values * np.ones((6, 3, 8, 8)))},
        coords={
            "time": np.arange(3.0),
            "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
            "a": ("run", a),
        },
    )
    with pytest.raises(ConfigError, match=r"global latitude-longitude grid.*SeparableDecoder"):
        xlevda.LDNet.fit(ds, ["a"], progress=False)
    # with the cosine terms given the closed form is fitted (the user's choice)
    given = LDNetConfig(
        latent_dim=3, dynamics=PolynomialDynamicsConfig(), decoder=CosineDecoderConfig(n_terms=3)
    )
    assert xlevda.LDNet.fit(ds, ["a"], given, progress=False).schema.geometry == "sphere"
