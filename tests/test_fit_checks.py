"""LDNet.fit refuses bad archives with an XlevdaError naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest

import xlevda
from tests import fit_mutations as m
from xlevda.errors import ConfigError, CoordinateError, ShapeError, VariableError

NAMED = {m.mutation_name(x): x for x in m.MUTATIONS}

CASES = [
    (m._value(np.nan), VariableError, r"variable '(eta|u)' holds 1 NaN value\(s\), e.g. at run="),
    (m._value(np.inf), VariableError, r"'(eta|u)' holds 1 infinite value\(s\), e.g. at run="),
    (m._value(1e300), VariableError, r"'(eta|u)' holds values up to 1e\+300 .* overflows"),
    (m.complex_variable, VariableError, r"'eta' must hold real numbers .* got dtype complex128"),
    (m.string_variable, VariableError, r"'eta' must hold real numbers .* got dtype <U"),
    (m._extra(("run", "lat", "lon")), ShapeError, r"'extra' has dimensions \('run', 'lat', "),
    (m._extra(("run", "time")), ShapeError, r"'extra' has dimensions .*variables="),
    (m._extra(("run",)), ShapeError, r"'extra' has dimensions \('run',\)"),
    (NAMED["single_run"], ConfigError, r"'run' has 1 run\(s\): need at least 2"),
    (NAMED["no_runs"], ConfigError, r"'run' has 0 run\(s\)"),
    (m.constant_parameter, VariableError, r"parameter 'a' takes the single value 0.3 on all 5"),
    (m._param(1j), VariableError, r"parameter 'a' must hold real numbers"),
    (m.cftime_times, CoordinateError, r"'time' must hold datetime64 .*DatetimeGregorian.*cftime"),
    (m.tz_times, CoordinateError, r"'time' must hold datetime64 .*Timestamp"),
    (m.duplicate_time, CoordinateError, r"'time' must be strictly increasing.*repeats"),
    (NAMED["reversed_time"], CoordinateError, r"'time' must be strictly increasing.*decreases"),
    (m.nat_time, CoordinateError, r"'time' holds NaT at position 3"),
    (m.duplicate_lat, CoordinateError, r"coordinate 'lat' must not repeat, got 40.0 2 times"),
    (NAMED["no_points"], ShapeError, r"spatial dimension 'lat' is empty"),
    (m.all_nan_variable, VariableError, r"'eta' is NaN everywhere"),
    (m.all_nan_run, VariableError, r"run 0 \(along 'run'\) is NaN in every variable"),
    (NAMED["params_string"], ConfigError, r"params must be a list of names, got 'a'"),
    (NAMED["variables_repeated"], ConfigError, r"variables must name each entry once"),
    (m.data_array, VariableError, r"dataset must be an xarray Dataset of runs, got DataArray"),
]


@pytest.mark.parametrize(
    ("mutation", "error", "message"), CASES, ids=[m.mutation_name(c[0]) for c in CASES]
)
def test_bad_archive_names_what_is_wrong(mutation, error, message):
    ds, kw = m.apply([mutation], seed=0)
    params = kw.pop("params")
    with pytest.raises(error, match=message):
        xlevda.LDNet.fit(ds, params, m.FITS["gradient"], progress=False, **kw)


def test_explicit_variables_leave_others_out():
    ds = m.base_archive().assign(depth=(("lat", "lon"), np.ones((6, 5))))
    model = xlevda.LDNet.fit(ds, ["a", "b"], m.FITS["gradient"], variables=["eta"], progress=False)
    assert model.schema.variables == ("eta",)


def test_a_parameter_stored_as_a_data_variable_is_not_a_field():
    ds = m.base_archive().reset_coords("b")
    model = xlevda.LDNet.fit(ds, ["a", "b"], m.FITS["gradient"], progress=False)
    assert model.schema.variables == ("eta", "u")


def test_names_may_come_as_any_iterable_of_strings():
    ds = m.base_archive()
    model = xlevda.LDNet.fit(ds, np.array(["a", "b"]), m.FITS["gradient"], progress=False)
    assert model.schema.params == ("a", "b")
    with pytest.raises(ConfigError, match=r"params must be a list of names, got \{'a': 1\}"):
        xlevda.LDNet.fit(ds, {"a": 1}, m.FITS["gradient"], progress=False)
    with pytest.raises(ConfigError, match=r"params must hold strings, got \[1\]"):
        xlevda.LDNet.fit(ds, [1], m.FITS["gradient"], progress=False)
