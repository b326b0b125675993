"""Assimilation methods, peers under one protocol (:class:`~xlevda.methods.base.Method`).

Each is a frozen, self-validating config passed as ``method`` to
:func:`xlevda.assimilate`; what every method shares (ensemble size, seed, dtype,
device, output layout) is :class:`xlevda.RunOptions`:

- :class:`LEVDA`: variational analyses in a surrogate's latent space (the default);
- :class:`LDEnSF`: the latent ensemble score filter with an observation encoder;
- :class:`LatentETKF`: the ensemble transform Kalman filter of the same latent space;
- :class:`OI`: optimal interpolation of each observation time, no model (a baseline);
- :class:`LETKF` (ETKF without a radius), :class:`EnSF`, :class:`FourDEnVar`: the
  full-state methods, with a simulator as the model.

The options they take are here too: :class:`Inflation`, :class:`Localization`,
:class:`RandomizedMaximumLikelihood`, :class:`SharedCost`, :class:`LBFGSConfig`,
:class:`GaussNewtonConfig`, :class:`EnSFConfig`, :class:`HybridCovariance`,
:class:`ModelErrorTerm` and :class:`FieldAnalysis`.  A new method is a module here plus its
import line below (``import X as X``: an explicit re-export, so that no list of names
repeats the imports).
"""

from xlevda.core.ensf import EnSFConfig as EnSFConfig
from xlevda.core.hybrid import HybridCovariance as HybridCovariance
from xlevda.core.inflation import Inflation as Inflation
from xlevda.core.localization import Localization as Localization
from xlevda.core.members import RandomizedMaximumLikelihood as RandomizedMaximumLikelihood
from xlevda.core.members import SharedCost as SharedCost
from xlevda.core.optim import GaussNewtonConfig as GaussNewtonConfig
from xlevda.core.optim import LBFGSConfig as LBFGSConfig
from xlevda.field_analysis import FieldAnalysis as FieldAnalysis
from xlevda.methods.base import Method as Method
from xlevda.methods.ensf import EnSF as EnSF
from xlevda.methods.fourdenvar import FourDEnVar as FourDEnVar
from xlevda.methods.latent_etkf import LatentETKF as LatentETKF
from xlevda.methods.ldensf import LDEnSF as LDEnSF
from xlevda.methods.letkf import LETKF as LETKF
from xlevda.methods.levda import LEVDA as LEVDA
from xlevda.methods.oi import OI as OI
from xlevda.model_error import ModelErrorTerm as ModelErrorTerm
