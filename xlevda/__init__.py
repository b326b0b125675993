"""xlevda: xarray-native latent ensemble variational data assimilation.

Train a differentiable latent surrogate (LDNet) on simulation archives, then
assimilate sparse, irregular observations into it to get an ensemble reanalysis
and parameter estimates as labelled xarray data.

The public names:

- ``assimilate``: analysis ensemble of observations on a target's times and places
  (also ``ds.levda.assimilate``, registered on import);
- ``LEVDA``, ``LDEnSF``, ``LETKF``, ``EnSF``, ``FourDEnVar``: the methods, each a
  frozen config passed as ``method`` (their options are in :mod:`xlevda.methods`);
- ``RunOptions``: what every method shares (members, seed, dtype, device, member
  dimension, output chunks, observations outside the domain, quality control,
  progress), passed as ``run=``; ``GrossErrorCheck``: its quality control, which
  rejects observations far from the background (flagged in the output with their
  departures O-B and O-A);
- ``LDNet``: the latent dynamics network surrogate (``LDNet.fit``, ``predict``,
  ``save``); ``LDNetConfig`` and its parts (``MLPDecoderConfig``,
  ``SeparableDecoderConfig``, ``CosineDecoderConfig``, ``LinearDynamicsConfig``,
  ``PolynomialDynamicsConfig``, ``TrainConfig``): the options of ``LDNet.fit``;
- ``load_surrogate``, ``load_pretrained``: a saved surrogate, a shipped one;
- ``write``: an analysis to NetCDF or zarr (by extension), CF-clean and compressed,
  under a temporary name renamed when complete; ``progress``: progress bars over the
  windows of an assimilation and the chunks of a write (a context manager);
- ``observations``: the observation Dataset ``assimilate`` takes, from a pandas
  DataFrame, a CSV file or station series;
- ``XlevdaError``: the base class of every input error (a ``ValueError``);
- ``metrics``: scores of an analysis against a truth; ``systems``: simulators and
  observation samplers for twin experiments; ``ldensf``: LD-EnSF's sensor networks
  and encoder training;
- ``__version__``.
"""

from __future__ import annotations

from xlevda import (
    accessor,  # noqa: F401  (registers the .levda accessor)
    ldensf,
    metrics,
    systems,
)
from xlevda._version import VERSION as __version__
from xlevda.api import assimilate
from xlevda.errors import XlevdaError
from xlevda.intake import observations
from xlevda.ldnet import LDNet
from xlevda.methods import LETKF, LEVDA, EnSF, FourDEnVar, LDEnSF
from xlevda.pretrained import load_pretrained
from xlevda.progress import progress
from xlevda.quality_control import GrossErrorCheck
from xlevda.run import RunOptions
from xlevda.surrogates.config import (
    LDNetConfig,
    LinearDynamicsConfig,
    PolynomialDynamicsConfig,
    TrainConfig,
)
from xlevda.surrogates.decoder_configs import (
    CosineDecoderConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
)
from xlevda.write import write

__all__ = [
    "LETKF",
    "LEVDA",
    "CosineDecoderConfig",
    "EnSF",
    "FourDEnVar",
    "GrossErrorCheck",
    "LDEnSF",
    "LDNet",
    "LDNetConfig",
    "LinearDynamicsConfig",
    "MLPDecoderConfig",
    "PolynomialDynamicsConfig",
    "RunOptions",
    "SeparableDecoderConfig",
    "TrainConfig",
    "XlevdaError",
    "__version__",
    "assimilate",
    "ldensf",
    "load_pretrained",
    "load_surrogate",
    "metrics",
    "observations",
    "progress",
    "systems",
    "write",
]


def load_surrogate(path, *, map_location: str = "cpu") -> LDNet:
    """Load a surrogate saved with ``save(path)``.

    Files are read without running pickled code; their checksum (``sha256``, stored
    by ``save``; files written before it was stored are read unverified), the sizes
    their config and schema declare (against the stored weights, before anything is
    allocated), and every weight and schema value (finite, valid) are checked.

    Raises
    ------
    xlevda.errors.SurrogateFileError
        If the file is truncated, corrupt or modified, of another format version or
        of another kind, or declares sizes or holds values that are not valid; the
        message names what.
    FileNotFoundError
        If ``path`` does not exist.
    """
    return LDNet.load(path, map_location=map_location)
