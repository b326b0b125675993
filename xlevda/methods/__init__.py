"""Assimilation methods, peers under one protocol (:class:`~xlevda.methods.base.Method`).

Each is a frozen, self-validating config passed as ``method`` to
:func:`xlevda.assimilate`; what every method shares (ensemble size, seed, dtype,
device, output layout) is :class:`xlevda.RunOptions`:

- :class:`LEVDA`: variational analyses in a surrogate's latent space (the default);
- :class:`LDEnSF`: the latent ensemble score filter with an observation encoder;
- :class:`LETKF` (ETKF without a radius), :class:`EnSF`, :class:`FourDEnVar`: the
  full-state methods, with a simulator as the model.

The options they take are here too: :class:`Inflation`, :class:`Localization`,
:class:`RandomizedMaximumLikelihood`, :class:`SharedCost`, :class:`LBFGSConfig`,
:class:`GaussNewtonConfig`, :class:`EnSFConfig`, :class:`HybridCovariance` and
:class:`ModelErrorTerm`.  A new method is a module here plus its import line below.
"""

from xlevda.core.ensf import EnSFConfig
from xlevda.core.hybrid import HybridCovariance
from xlevda.core.inflation import Inflation
from xlevda.core.localization import Localization
from xlevda.core.members import RandomizedMaximumLikelihood, SharedCost
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.methods.base import Method
from xlevda.methods.ensf import EnSF
from xlevda.methods.fourdenvar import FourDEnVar
from xlevda.methods.ldensf import LDEnSF
from xlevda.methods.letkf import LETKF
from xlevda.methods.levda import LEVDA
from xlevda.model_error import ModelErrorTerm

__all__ = [
    "LETKF",
    "LEVDA",
    "EnSF",
    "EnSFConfig",
    "FourDEnVar",
    "GaussNewtonConfig",
    "HybridCovariance",
    "Inflation",
    "LBFGSConfig",
    "LDEnSF",
    "Localization",
    "Method",
    "ModelErrorTerm",
    "RandomizedMaximumLikelihood",
    "SharedCost",
]
