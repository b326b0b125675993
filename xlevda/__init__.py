"""xlevda: xarray-native latent ensemble variational data assimilation.

Train a differentiable latent surrogate (LDNet) on simulation archives, then
assimilate sparse, irregular observations into it to get an ensemble reanalysis
and parameter estimates as labelled xarray data.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xlevda import systems
from xlevda.errors import XlevdaError
from xlevda.ldnet import LDNet
from xlevda.pretrained import load_pretrained
from xlevda.surrogates.config import (
    LDNetConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
    TrainConfig,
)

try:
    __version__ = version("xlevda")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "LDNet",
    "LDNetConfig",
    "MLPDecoderConfig",
    "SeparableDecoderConfig",
    "TrainConfig",
    "XlevdaError",
    "__version__",
    "load_pretrained",
    "load_surrogate",
    "systems",
]


def load_surrogate(path, *, map_location: str = "cpu") -> LDNet:
    """Load a surrogate saved with ``save(path)``.

    Raises
    ------
    xlevda.errors.SurrogateFileError
        If the file is corrupt, of another format version or of another kind.
    """
    return LDNet.load(path, map_location=map_location)
