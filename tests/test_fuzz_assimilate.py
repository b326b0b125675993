"""Bad input to ``assimilate``: only ``XlevdaError`` escapes, and accepted input is fully used.

A hypothesis fuzzer over the mutations of :mod:`tests.fuzzing` (the larger seeded run is
``benchmarks/reliability/fuzz_assimilate.py``), then one regression test per case that
issue 18 lists.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzzing import MUTATIONS, base_call, expected_count, mutate, outcome, run_call
from xlevda.errors import ConfigError, CoordinateError, ObservationError, VariableError

ACCEPTED = ("XlevdaError", "success", "TypeError (unknown keyword)")


@pytest.fixture(scope="module")
def base(truth):
    return base_call(truth)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    names=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=2, unique=True),
    seed=st.integers(0, 2**32 - 1),
)
def test_only_xlevda_errors_escape_and_accepted_calls_use_every_observation(
    model, base, names, seed
):
    kind, detail = outcome(mutate(base, names, np.random.default_rng(seed)), model)
    assert kind in ACCEPTED, f"{names}: {kind}: {detail}"


def test_the_base_call_uses_every_observation(model, base):
    assert outcome(base, model) == ("success", "")


def _call(base, name, seed=0):
    return mutate(base, [name], np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("obs zero length", ObservationError, r"observations are empty: dimension 'obs' has len"),
        ("obs DataArray", ObservationError, r"observations must be an xarray Dataset .* DataArr"),
        ("obs ndarray", ObservationError, r"must be an xarray Dataset .*, got ndarray"),
        ("obs None", ObservationError, r"must be an xarray Dataset .*, got NoneType"),
        ("eta on other dim", ObservationError, r"'eta' has dims \('sensor',\), expected \('obs'"),
        ("eta scalar", ObservationError, r"observed variable 'eta' has dims \(\), expected"),
        ("eta_std on other dim", ObservationError, r"'eta_std' has dims \('sensor',\), expected"),
        ("eta +inf", ObservationError, r"'eta' must hold finite .*infinite values: \d of 54"),
        ("eta -inf", ObservationError, r"'eta' must hold finite .*infinite values: \d of 54"),
        ("eta complex", ObservationError, r"'eta' must hold real numbers, got complex numbers"),
        ("eta strings", ObservationError, r"'eta' must hold real numbers, got strings"),
        ("eta None", ObservationError, r"'eta' must hold real numbers, got objects .*e\.g\. None"),
        ("lat None", ObservationError, r"coordinate 'lat' must hold real numbers.*e\.g\. None"),
        ("lon inf", ObservationError, r"coordinate 'lon' must hold finite .*infinite values"),
        ("lat NaN", ObservationError, r"coordinate 'lat' must hold finite .*got NaN: \d of 54"),
        ("time NaT", CoordinateError, r"'observation time' holds NaT \(not a time\): \d of 54"),
        ("time cftime", CoordinateError, r"got cftime dates \(calendar 'noleap'\); convert"),
        ("time Period", CoordinateError, r"got pandas Periods; convert them with to_timestamp"),
        ("time ISO strings", CoordinateError, r"got strings .*parse them with pandas.to_datetime"),
        ("time tz-aware", CoordinateError, r"got timezone-aware times; convert them to naive"),
        (
            "time before origin",
            CoordinateError,
            r"outside the surrogate's time range: it precedes the first",
        ),
        ("target NaT", CoordinateError, r"'target time' holds NaT \(not a time\)"),
        ("target cftime", CoordinateError, r"'target time' must hold datetime64 .* cftime"),
        ("target tz-aware", CoordinateError, r"'target time' .* timezone-aware"),
        ("target empty lon", CoordinateError, r"spatial coordinate 'lon' is empty"),
        ("target lon NaN", CoordinateError, r"spatial coordinate 'lon' must hold finite .* NaN"),
        ("target None", CoordinateError, r"target must be an xarray Dataset or DataArray"),
        ("target ndarray", CoordinateError, r"target must be .*, got ndarray"),
        ("errors 'u'", ObservationError, r"errors must be a mapping \{variable: std\}, got 'u'"),
        ("errors string value", ObservationError, r"errors\['u'\] must be a finite .*got '0\.1'"),
        ("errors unknown variable", ObservationError, r"errors names 'zeta', not a variable"),
        ("errors and eta_std", ObservationError, r"errors\['eta'\]=0\.2 while the observations h"),
        ("variables string", ObservationError, r"variables must be a list .*, got 'eta'"),
        ("variables duplicate", ObservationError, r"name each variable once"),
        ("background strings", VariableError, r"parameter 'a' must hold real numbers, got str"),
        ("background complex", VariableError, r"parameter 'a' must hold real numbers, got comp"),
        ("background number", ConfigError, r"background must be None, a mapping .*got float"),
        ("seed -1", ConfigError, r"RunOptions.seed=-1: expected an integer >= 0"),
        ("window_stride '1'", ConfigError, r"LEVDA.window_stride='1': expected an integer"),
        ("window_stride 2.5", ConfigError, r"LEVDA.window_stride=2\.5: expected an integer"),
        ("chunks auto", ConfigError, r"RunOptions.chunks='auto': expected OutputChunks"),
        ("device tpu", ConfigError, r"RunOptions.device='tpu': expected one of \('cpu'"),
        ("device meta", ConfigError, r"RunOptions.device='meta': expected one of"),
        ("member_dim lat", ConfigError, r"member_dim='lat' is already a dimension or coord"),
        ("member_dim time", ConfigError, r"member_dim='time' is already a dimension or coord"),
        ("member_dim window", ConfigError, r"member_dim='window' is already a dimension of th"),
        ("member_dim empty", ConfigError, r"RunOptions.member_dim='': expected a non-empty"),
        ("member_dim None", ConfigError, r"RunOptions.member_dim=None: expected a non-empty"),
        ("inflation 1e300", ConfigError, r"multiplicative=1e\+300 is out of range: .* <= 100"),
        ("inflation additive 1e300", ConfigError, r"additive=1e\+300 is out of range"),
        ("members 10**6", ConfigError, r"members=1000000 needs at least .* GiB .*lower members"),
        ("case_dim obs", ConfigError, r"case_dim='obs' is the dimension of the observation times"),
    ],
)
def test_bad_input_is_named(model, base, name, error, match):
    with pytest.raises(error, match=match):
        run_call(_call(base, name), model)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_config_error(model, base):
    with pytest.raises(ConfigError, match=r"device='cuda': not available on this machine"):
        run_call(_call(base, "device cuda"), model)


def test_nan_observations_are_skipped_and_counted(model, base):
    call = _call(base, "eta some NaN")
    out = run_call(call, model)
    n_given = expected_count(call)
    assert n_given < expected_count(base)
    assert out.attrs["n_observations_used"] == n_given == int(out.window_n_obs.sum())


def test_outside_drop_counts_the_dropped_values(model, base):
    """Two variables at each of 3 positions outside: 6 values dropped, the rest used."""
    lat = base.obs.lat.values.copy()
    lat[:3] = 80.0
    call = _call(base, "outside drop")
    call.obs = call.obs.assign_coords(lat=("obs", lat))
    out = run_call(call, model)
    assert out.attrs["n_observations_dropped"] == 6
    assert out.attrs["n_observations_used"] == expected_count(base) - 6


def test_target_on_the_training_grid_in_float32_is_inside(model, base):
    out = run_call(_call(base, "target float32 grid"), model)
    assert out.eta.sizes["lat"] == 8 and np.isfinite(out.eta.values).all()


def test_values_beyond_float32_are_an_error(model, base):
    call = _call(base, "eta some NaN")
    eta = base.obs.eta.values.copy()
    eta[:2] = 1e30
    call.obs = base.obs.assign(eta=("obs", eta))
    call.run["dtype"] = "float32"
    with pytest.raises(
        ObservationError,
        match=r"'eta' has 2 values out of the range of a float32 run, e\.g\. 1e\+30",
    ):
        run_call(call, model)
    call.run["dtype"] = "float64"
    assert outcome(call, model)[0] == "success"


def test_naive_python_datetimes_work_as_datetime64(model, base):
    call = _call(base, "eta some NaN")
    as_objects = np.array(list(call.obs.time.to_index().to_pydatetime()), dtype=object)
    moved = call.obs.assign_coords(time=("obs", as_objects))
    a = run_call(call, model)
    call.obs = moved
    b = run_call(call, model)
    xr.testing.assert_allclose(a.eta, b.eta)


def test_cases_padded_to_one_length_use_every_observation(model, base):
    """The second case's 24 padded observations (NaN values, NaT times, NaN positions) are
    not observations: both cases run, with every value of each."""
    call = _call(base, "obs uneven cases")
    assert np.isnat(call.obs.time.values[1, 30:]).all()
    out = run_call(call, model)
    assert out.sizes["case"] == 2
    assert out.window_n_obs.sum("window").values.tolist() == [108, 60]
    assert out.attrs["n_observations_used"] == expected_count(call) == 168
