"""The shipped surrogates load and predict as they did when they were trained."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from xlevda.pretrained import available, load_pretrained

# sha256 of the loaded state dict (sorted names, then bytes) and, per variable, the sum of
# |forecast| over the training frames and grid at the centre of the parameter range
EXPECTED = {
    "kolmogorov": (
        "dc41715a8d2c23c0d58ac627508c72c5aa39cfd4d8594059641d4177215bd38f",
        {"u": 128175.94457773467, "v": 134295.45710504174, "vorticity": 521076.3894763989},
    ),
    "sphere": (
        "f89ee766bc7b8081cad5a1f9c6af864736f55811f718081fbc63fe53b5b16977",
        {"u": 503526.22970219277, "v": 154012.7873771913, "height": 22585641.491940707},
    ),
    "tsunami": (
        "7dead1d82d97fb01e8ac4ad761c5b1947459e8a4eae2bcc85b21c781fad319b7",
        {"u": 1035.5787745546786, "v": 1015.46476672422, "eta": 4572.273587771025},
    ),
}


def test_every_shipped_surrogate_is_pinned():
    assert available() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_pretrained_loads_and_predicts_as_before(name):
    model = load_pretrained(name)
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    weights, sums = EXPECTED[name]
    assert digest.hexdigest() == weights
    schema = model.schema
    centre = {
        p: 0.5 * (lo + hi) for p, (lo, hi) in zip(schema.params, schema.param_range, strict=True)
    }
    forecast = model.predict(centre)
    assert sorted(forecast.data_vars) == sorted(sums)
    for var, total in sums.items():
        np.testing.assert_allclose(float(np.abs(forecast[var].values).sum()), total, rtol=1e-5)
