"""The ``.levda`` accessor on xarray Datasets and DataArrays."""

from __future__ import annotations

from typing import Any

import xarray as xr

from xlevda import api

__all__ = ["LevdaAccessor"]


class LevdaAccessor:
    """``ds.levda``: assimilation onto the times and places of ``ds``.

    Examples
    --------
    >>> import xarray as xr, xlevda
    >>> hasattr(xr.Dataset().levda, "assimilate")
    True
    """

    def __init__(self, obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = obj

    def assimilate(self, obs: xr.Dataset, surrogate: Any, method: Any = None, **kwargs: Any):
        """Analysis ensemble on this object's times and places.

        See :func:`xlevda.api.assimilate` for the parameters.
        """
        return api.assimilate(self._obj, obs, surrogate, method, **kwargs)


xr.register_dataset_accessor("levda")(LevdaAccessor)
xr.register_dataarray_accessor("levda")(LevdaAccessor)
