"""Parameters drawn over a range: the prior of an ensemble's parameters (torch only)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xlevda.errors import ConfigError
from xlevda.surrogates.protocol import ParameterSpace
from xlevda.validate import check_int

__all__ = ["prior_params"]


def prior_params(
    schema: ParameterSpace,
    n: int,
    generator: torch.Generator,
    prior_range: tuple[tuple[float, float], ...] | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Normalized parameters drawn uniformly from a range in physical units.

    Parameters
    ----------
    schema : ParameterSpace
        Gives the parameter normalization and the default range (a surrogate's
        ``schema``).
    n : int
        Number of draws (>= 1).
    generator : torch.Generator
        Source of the draws (its device is used to draw).
    prior_range : tuple of (lo, hi), optional
        One ``(lo, hi)`` per parameter, ``lo <= hi``; ``None`` is ``schema.param_range``.
    dtype, device : optional
        Of the result (default: torch's default dtype, CPU).

    Returns
    -------
    Tensor, shape (n, d_u)

    Examples
    --------
    >>> import torch
    >>> from types import SimpleNamespace
    >>> norm = SimpleNamespace(normalize=lambda x: (x - 1.0) / 2.0)
    >>> schema = SimpleNamespace(param_norm=norm, param_range=((-1.0, 3.0),))
    >>> u = prior_params(schema, 1000, torch.Generator().manual_seed(0))
    >>> bool(u.min() >= -1) and bool(u.max() <= 1)
    True
    """
    check_int("n", n, 1)
    ranges = schema.param_range if prior_range is None else prior_range
    d_u = len(schema.param_range)
    try:
        bounds = np.asarray(ranges, dtype=float)
    except (TypeError, ValueError):
        bounds = np.empty(0)
    if (
        bounds.shape != (d_u, 2)
        or not np.isfinite(bounds).all()
        or (bounds[:, 0] > bounds[:, 1]).any()
    ):
        raise ConfigError(
            f"prior_range must hold one finite (lo, hi) with lo <= hi per parameter "
            f"({d_u}), got {ranges!r}"
        )
    lo = schema.param_norm.normalize(bounds[:, 0])
    hi = schema.param_norm.normalize(bounds[:, 1])
    dtype = dtype or torch.get_default_dtype()
    draw = torch.rand(n, d_u, generator=generator, dtype=torch.float64, device=generator.device)
    lo_t = torch.as_tensor(lo, dtype=torch.float64, device=generator.device)
    hi_t = torch.as_tensor(hi, dtype=torch.float64, device=generator.device)
    return (lo_t + (hi_t - lo_t) * draw).to(dtype=dtype, device=device)
