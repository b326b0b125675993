"""The options of ``xlevda train`` and the :class:`~xlevda.LDNetConfig` they give.

Every default is read from ``LDNetConfig()`` and its parts, so the command line fits
what ``LDNet.fit`` fits by default: the closed-form polynomial LDNet, its latent size
and cosine terms chosen from the archive.
"""

from __future__ import annotations

import argparse

__all__ = ["DECODERS", "add_train_options", "default_decoder", "train_config"]

DECODERS = ("polynomial", "linear", "mlp", "separable")
"""``--decoder`` choices: the closed-form LDNets (cosine decoder; polynomial or linear
latent dynamics) and the gradient-trained ones (neural decoders, MLP vector field)."""


def default_decoder() -> str:
    """The ``--decoder`` choice of ``LDNetConfig()``: its closed-form dynamics' kind, or
    its decoder's kind for a gradient-trained default.

    Examples
    --------
    >>> default_decoder()
    'polynomial'
    """
    from xlevda.surrogates.config import LDNetConfig

    config = LDNetConfig()
    return config.dynamics.kind if config.dynamics is not None else config.decoder.kind


def _positive_or_auto(text: str) -> int | None:
    """An integer, or ``auto`` (``None``: chosen by ``LDNet.fit`` from the archive)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def add_train_options(tr: argparse.ArgumentParser) -> None:
    """Add the model and training options of ``xlevda train`` to ``tr``."""
    from xlevda.surrogates.config import LDNetConfig, PolynomialDynamicsConfig, TrainConfig

    poly, train, default = PolynomialDynamicsConfig(), TrainConfig(), default_decoder()
    tr.add_argument(
        "--decoder",
        choices=DECODERS,
        default=default,
        help=f"model family (default {default}, as LDNetConfig()): 'polynomial' fits the "
        "closed-form LDNet with latent dynamics polynomial in the parameters and the state "
        "(cosine-series decoder, operator inference; no epochs); 'linear' the closed-form "
        "linear one (the shipped tsunami model's kind, for systems linear in their state); "
        "'mlp' and 'separable' train neural decoders and an MLP vector field by gradient "
        "descent (--epochs)",
    )
    tr.add_argument(
        "--latent-dim",
        type=_positive_or_auto,
        default=None,
        help="latent dimension (default auto: the closed-form fits keep the proper "
        f"orthogonal modes for a projection error of {poly.mode_tolerance}, at most "
        f"{poly.max_modes}; gradient training {LDNetConfig(decoder=_mlp()).latent_dim}; the "
        "shipped linear tsunami model has 641)",
    )
    tr.add_argument(
        "--cosine-terms",
        type=_positive_or_auto,
        default=None,
        help="cosine terms per coordinate of the closed-form decoder (default auto: as many "
        "as the training points determine, at most 32)",
    )
    tr.add_argument(
        "--param-degree",
        type=int,
        default=poly.param_degree,
        help="largest degree of the parameter monomials of the polynomial dynamics "
        f"(default {poly.param_degree})",
    )
    tr.add_argument(
        "--quadratic-modes",
        type=int,
        default=poly.quadratic_modes,
        help="leading modes whose products enter the polynomial dynamics "
        f"(default {poly.quadratic_modes}: none)",
    )
    tr.add_argument(
        "--epochs",
        type=int,
        default=train.epochs,
        help=f"training epochs of --decoder mlp or separable (default {train.epochs})",
    )
    tr.add_argument(
        "--val-fraction",
        type=float,
        default=train.validation_fraction,
        help=f"fraction of runs held out for validation (default {train.validation_fraction})",
    )


def _mlp():
    from xlevda.surrogates.decoder_configs import MLPDecoderConfig

    return MLPDecoderConfig()


def train_config(args: argparse.Namespace):
    """The :class:`~xlevda.LDNetConfig` of ``xlevda train``'s options: Python's defaults
    (``LDNetConfig()``, ``TrainConfig()``) for every option left out."""
    from dataclasses import replace

    from xlevda.surrogates.config import (
        LDNetConfig,
        LinearDynamicsConfig,
        PolynomialDynamicsConfig,
        TrainConfig,
    )
    from xlevda.surrogates.decoder_configs import CosineDecoderConfig, SeparableDecoderConfig

    train = replace(
        TrainConfig(), epochs=args.epochs, seed=args.seed, validation_fraction=args.val_fraction
    )
    common = {"latent_dim": args.latent_dim, "seed": args.seed, "train": train}
    if args.decoder in ("linear", "polynomial"):
        dynamics = (
            LinearDynamicsConfig()
            if args.decoder == "linear"
            else PolynomialDynamicsConfig(
                param_degree=args.param_degree, quadratic_modes=args.quadratic_modes
            )
        )
        return LDNetConfig(
            dynamics=dynamics, decoder=CosineDecoderConfig(n_terms=args.cosine_terms), **common
        )
    decoder = SeparableDecoderConfig() if args.decoder == "separable" else _mlp()
    return LDNetConfig(decoder=decoder, **common)
