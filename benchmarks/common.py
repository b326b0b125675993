"""Helpers shared by the benchmark scripts (import with ``PYTHONPATH=.`` from the repository root).

- :func:`mlp_ldnet`: the LDNet with the MLP decoder that the optimizer and FLOP-rate
  benchmarks assimilate into.  Untrained (seeded Glorot weights), frozen, on the unit square
  with three channels and two parameters: the tsunami CPU setting's sizes without the cost
  of training it.
"""

from __future__ import annotations

import xlevda
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.schema import Affine, SurrogateSchema

__all__ = ["mlp_ldnet"]


def mlp_ldnet(
    width: int = 64,
    depth: int = 3,
    activation: str = "tanh",
    latent_dim: int = 12,
    n_fourier: int = 64,
    dt0: float | None = None,
    seed: int = 0,
) -> LDNetModel:
    """A frozen, untrained LDNet with the MLP decoder (``width`` x ``depth``); ``dt0``
    as in :class:`~xlevda.LDNetConfig` (larger: the parameters matter more)."""
    schema = SurrogateSchema(
        variables=("u", "v", "eta"),
        variable_attrs=({}, {}, {}),
        output_norm=Affine((0.0,) * 3, (1.0,) * 3),
        coords=("lat", "lon"),
        coord_attrs=({}, {}),
        coord_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        params=("a", "b"),
        param_attrs=({}, {}),
        param_norm=Affine((0.0, 0.0), (1.0, 1.0)),
        param_range=((-1.0, 1.0), (-1.0, 1.0)),
        time_origin="0",
        time_step=1.0,
        time_units="s",
        time_is_datetime=False,
        n_frames=51,
    )
    decoder = xlevda.MLPDecoderConfig(
        width=width, depth=depth, n_fourier=n_fourier, fourier_scale=2.0
    )
    config = xlevda.LDNetConfig(
        latent_dim=latent_dim, decoder=decoder, activation=activation, dt0=dt0, seed=seed
    )
    model = LDNetModel(config, schema).eval()
    model.requires_grad_(False)
    return model
