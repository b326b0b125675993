"""xlevda: xarray-native latent ensemble variational data assimilation.

Train a differentiable latent surrogate (LDNet) on simulation archives, then
assimilate sparse, irregular observations into it to get an ensemble reanalysis
and parameter estimates as labelled xarray data.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from xlevda import (
    accessor,  # noqa: F401  (registers the .levda accessor)
    ldensf,
    metrics,
    systems,
)
from xlevda.api import assimilate
from xlevda.config import FullStateConfig, LEVDAConfig, ModelError, OutputChunks
from xlevda.core.ensf import EnSFConfig, ScaledEnSFConfig
from xlevda.core.envar import FourDEnVarConfig, Localization
from xlevda.core.ldensf import LDEnSFConfig
from xlevda.core.letkf import LETKFConfig
from xlevda.core.members import Randomized, WarmStart
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.errors import XlevdaError
from xlevda.ldnet import LDNet
from xlevda.pretrained import load_pretrained
from xlevda.surrogates.config import (
    CosineDecoderConfig,
    LDNetConfig,
    LinearDynamicsConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
    TrainConfig,
)
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder

try:
    __version__ = version("xlevda")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CosineDecoderConfig",
    "EnSFConfig",
    "EncoderConfig",
    "FourDEnVarConfig",
    "FullStateConfig",
    "GaussNewtonConfig",
    "LBFGSConfig",
    "LDEnSFConfig",
    "LDNet",
    "LDNetConfig",
    "LETKFConfig",
    "LEVDAConfig",
    "LinearDynamicsConfig",
    "Localization",
    "MLPDecoderConfig",
    "ModelError",
    "ObservationEncoder",
    "OutputChunks",
    "Randomized",
    "ScaledEnSFConfig",
    "SeparableDecoderConfig",
    "TrainConfig",
    "WarmStart",
    "XlevdaError",
    "__version__",
    "assimilate",
    "ldensf",
    "load_pretrained",
    "load_surrogate",
    "metrics",
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
