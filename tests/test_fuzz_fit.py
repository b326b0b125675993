"""Fuzzing LDNet.fit: only XlevdaError escapes, and nothing is silently left out of the model.

The mutations (``tests/fit_mutations.py``) change a tiny valid archive or the call; each
fit either succeeds with every data variable in the model (or a ``variables=`` the call
chose) and a finite forecast, or raises an :class:`~xlevda.errors.XlevdaError`.
``benchmarks/reliability/fuzz_fit.py`` runs the same with more cases and counts outcomes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fit_mutations import MUTATIONS, apply, base_archive, fit_outcome, mutation_name

ACCEPTED = ("ok", "XlevdaError")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=mutation_name)
def test_each_mutation_is_used_or_refused(mutation):
    torch.manual_seed(0)
    ds, kw = apply([mutation], seed=1)
    outcome, detail = fit_outcome(ds, kw, "linear")
    assert outcome in ACCEPTED, f"{mutation_name(mutation)}: {outcome}: {detail}"


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every machine; the benchmarks explore more
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    mutations=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2),
    seed=st.integers(0, 2**16),
    fit=st.sampled_from(["linear", "gradient"]),
)
def test_fuzzed_fit_raises_only_xlevda_errors(mutations, seed, fit):
    torch.manual_seed(seed)
    ds, kw = apply(mutations, seed)
    outcome, detail = fit_outcome(ds, kw, fit)
    assert outcome in ACCEPTED, f"{[mutation_name(m) for m in mutations]}: {outcome}: {detail}"


def test_the_valid_archive_fits():
    """The base of every mutation is valid, so refusals are the mutations' doing."""
    ds, kw = apply([], seed=0)
    assert fit_outcome(ds, kw, "linear") == ("ok", "")
    assert fit_outcome(ds, kw, "gradient") == ("ok", "")


@pytest.mark.parametrize("mutation", MUTATIONS, ids=mutation_name)
def test_each_mutation_applies_to_the_valid_archive(mutation):
    """``apply`` skips a mutation that does not fit what earlier ones made; on the valid
    archive none may be skipped, or the fuzzer would test less than it says."""
    ds, kw = mutation(base_archive(), {"params": ["a", "b"]}, np.random.default_rng(0))
    assert isinstance(ds, xr.Dataset | xr.DataArray) and "params" in kw
