"""Checks of the observation inputs of :func:`xlevda.assimilate`: the Dataset, ``errors=``,
``variables=`` and the dims of the observed variables and their ``<var>_std``.

Used by :func:`xlevda._obs.obs_table` (and :mod:`xlevda.api` before it splits cases).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import xarray as xr

from xlevda.errors import ObservationError
from xlevda.surrogates.schema import SurrogateSchema
from xlevda.validate import is_positive

__all__ = ["STD_SUFFIX", "check_dataset", "check_dims", "check_errors", "observed_variables"]

STD_SUFFIX = "_std"
"""Suffix of the variable holding a variable's observation error standard deviations."""


def check_dataset(obs: object) -> None:
    """Raise unless the observations ``obs`` are an xarray Dataset.

    Examples
    --------
    >>> check_dataset(None)
    Traceback (most recent call last):
    ...
    xlevda.errors.ObservationError: observations must be an xarray Dataset (values as data \
variables, time and positions as coordinates), got NoneType
    """
    if not isinstance(obs, xr.Dataset):
        raise ObservationError(
            "observations must be an xarray Dataset (values as data variables, time and "
            f"positions as coordinates), got {type(obs).__name__}"
        )


def check_errors(errors: object, schema: SurrogateSchema) -> dict[str, float]:
    """``errors=`` checked: ``None`` or a mapping of the surrogate's variables to stds > 0.

    Examples
    --------
    >>> s = SurrogateSchema.minimal(n_frames=2)
    >>> check_errors({"h": 0.1}, s)
    {'h': 0.1}
    >>> check_errors("h", s)
    Traceback (most recent call last):
    ...
    xlevda.errors.ObservationError: errors must be a mapping {variable: std}, got 'h'
    """
    if errors is None:
        return {}
    if not isinstance(errors, Mapping):
        raise ObservationError(f"errors must be a mapping {{variable: std}}, got {errors!r}")
    for v, std in errors.items():
        if v not in schema.variables:
            raise ObservationError(
                f"errors names {v!r}, not a variable of the surrogate, which produces "
                f"{list(schema.variables)}"
            )
        if not is_positive(std):
            raise ObservationError(
                f"errors[{v!r}] must be a finite number > 0 (an error standard deviation), "
                f"got {std!r}"
            )
    return {str(v): float(std) for v, std in errors.items()}


def observed_variables(
    obs: xr.Dataset, variables: Sequence[str] | None, schema: SurrogateSchema
) -> list[str]:
    """The variables to use: checked against the schema and the observations."""
    if variables is None:
        variables = [str(v) for v in obs.data_vars if not str(v).endswith(STD_SUFFIX)]
    elif isinstance(variables, str) or not isinstance(variables, Sequence):
        raise ObservationError(f"variables must be a list of variable names, got {variables!r}")
    if not variables:
        raise ObservationError(
            "no variable to assimilate (variables names none, or the observations hold no "
            "data variable but <var>_std): expected some of "
            f"{list(schema.variables)}, got data variables {sorted(map(str, obs.data_vars))}"
        )
    if len(set(variables)) != len(variables):
        raise ObservationError(f"variables must name each variable once, got {list(variables)}")
    for v in variables:
        if v not in schema.variables:
            raise ObservationError(
                f"observed variable {v!r} is not produced by the surrogate, which produces "
                f"{list(schema.variables)}; pass variables=[...] to use some data variables only"
            )
        if v not in obs.data_vars:
            raise ObservationError(
                f"variable {v!r} not in the observations; they hold "
                f"{sorted(map(str, obs.data_vars))}"
            )
    return list(variables)


def check_dims(
    obs: xr.Dataset, variables: Sequence[str], dims: tuple, errors: Mapping[str, float]
) -> None:
    """Every observed variable on ``dims``; its error either ``<var>_std``, on some of
    them, or in ``errors``, not both."""
    for v in variables:
        if v in errors and v + STD_SUFFIX in obs.variables:
            raise ObservationError(
                f"errors[{v!r}]={errors[v]!r} while the observations hold {v + STD_SUFFIX!r}: "
                "give the error of each variable once"
            )
        if set(obs[v].dims) != set(dims):
            raise ObservationError(
                f"observed variable {v!r} has dims {obs[v].dims}, expected {dims} (one value "
                "per observation time and position)"
            )
        std = v + STD_SUFFIX
        if std in obs.variables and not set(obs[std].dims) <= set(dims):
            raise ObservationError(
                f"{std!r} has dims {obs[std].dims}, expected some of {v!r}'s dims {dims}"
            )
