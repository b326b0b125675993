"""Each decoder and dynamics config builds its network; the shared field validators."""

from __future__ import annotations

import math

import pytest
import torch

from xlevda.errors import ConfigError
from xlevda.surrogates.config import LDNetConfig, LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import (
    DECODER_CONFIGS,
    CosineDecoderConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
)
from xlevda.surrogates.decoders import CosineDecoder, MLPDecoder, SeparableDecoder
from xlevda.surrogates.vector_fields import ImpulseLinearField, VectorFieldNet
from xlevda.validate import check_choice, check_int, check_real


@pytest.mark.parametrize(
    ("config", "cls"),
    [
        (MLPDecoderConfig(width=6, depth=2, n_fourier=3), MLPDecoder),
        (SeparableDecoderConfig(n_basis=4, basis_width=5, coef_width=5), SeparableDecoder),
        (CosineDecoderConfig(n_terms=3), CosineDecoder),
    ],
    ids=["mlp", "separable", "cosine"],
)
def test_each_decoder_config_builds_its_decoder(config, cls):
    assert DECODER_CONFIGS[config.kind] is type(config)
    decoder = config.build(3, 2, 4, activation="tanh", seed=0)
    assert type(decoder) is cls
    assert decoder(torch.zeros(5, 3), torch.zeros(7, 2)).shape == (5, 7, 4)
    # the same seed and global generator state give the same weights
    torch.manual_seed(1)
    a = config.build(3, 2, 4, activation="tanh", seed=0).state_dict()
    torch.manual_seed(1)
    b = config.build(3, 2, 4, activation="tanh", seed=0).state_dict()
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=0, atol=0)


def test_ldnet_config_builds_its_dynamics_and_decoder():
    plain = LDNetConfig(
        latent_dim=3,
        dynamics_width=5,
        dynamics_depth=2,
        dynamics_linear=True,
        decoder=MLPDecoderConfig(),
    )
    field = plain.build_dynamics(param_dim=2, dt=0.5)
    assert type(field) is VectorFieldNet and field.linear_s is not None
    assert type(plain.build_decoder(n_coords=2, n_channels=1)) is MLPDecoder
    linear = LDNetConfig(
        latent_dim=3,
        learnable_dt=False,
        dynamics=LinearDynamicsConfig(n_centres=4),
        decoder=CosineDecoderConfig(n_terms=2),
    )
    field = linear.build_dynamics(param_dim=2, dt=0.5)
    assert type(field) is ImpulseLinearField and float(field.step) == 0.5
    assert field.centres.shape == (4, 2)
    with pytest.raises(ConfigError, match=r"n_centres is None: give the number of centres"):
        LinearDynamicsConfig().build(3, 2, 0.5)


def test_validators_name_the_field_and_the_valid_range():
    check_int("n", 2, 1, 3)
    with pytest.raises(ConfigError, match=r"^n must be an integer in \[1, 3\], got True$"):
        check_int("n", True, 1, 3)
    check_real("x", 1.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"^x must be a finite number in \[0.0, 1.0\), got 1.0$"):
        check_real("x", 1.0, 0.0, 1.0, high_open=True)
    with pytest.raises(ConfigError, match=r"got nan"):
        check_real("x", math.nan, 0.0)
    with pytest.raises(ConfigError, match=r"^k must be one of \('a', 'b'\), got 'c'$"):
        check_choice("k", "c", ("a", "b"))
