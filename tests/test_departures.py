"""Per-observation departures O-B and O-A, used/rejected flags, the gross-error check, progress."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from xlevda.core.dynamics import propagate
from xlevda.driver import prepare_model
from xlevda.errors import ConfigError, ObservationError
from xlevda.field_analysis import FieldAnalysis
from xlevda.methods import LETKF, LEVDA, OI, Inflation
from xlevda.obs_output import FLAG_FILL, pad_cases
from xlevda.quality_control import GrossErrorCheck
from xlevda.run import RunOptions
from xlevda.systems import observe, tsunami
from xlevda.systems.tsunami_model import TsunamiModel

RUN = RunOptions(members=4, dtype="float64", progress=False)


def _obs(truth, std=0.05, variables=("eta",)):
    obs = truth[list(variables)].isel(lat=slice(None, None, 3), lon=slice(None, None, 3))
    obs = obs.assign({f"{v}_std": xr.full_like(obs[v], std) for v in variables})
    obs = obs.stack(obs=("time", "lat", "lon")).reset_index("obs")
    return obs.drop_vars([c for c in ("a", "b", "run") if c in obs.coords])


def _states(model, analysis) -> np.ndarray:
    """The output's analysis states ``(s, u)`` per time and member, normalized (T, K, d_z)."""
    schema = model.schema
    u = np.stack([analysis[p].values for p in schema.params], -1)
    return np.concatenate([analysis.latent_state.values, schema.param_norm.normalize(u)], -1)


def _decoded(model, z: np.ndarray, where: np.ndarray, channel: int, steps: int) -> np.ndarray:
    """Members ``z`` (K, d_z) run ``steps`` forward and decoded at ``where`` (P, n_coords),
    physical units (K, P): the reference, by hand through the model."""
    schema, model = model.schema, prepare_model(model, RUN)  # in float64, as the run
    points, _ = schema.embed(where)
    with torch.no_grad():
        zt = torch.as_tensor(z, dtype=torch.float64)
        if steps:
            zt = propagate(model, zt, steps)
        prepared = model.prepare_points(torch.as_tensor(points, dtype=torch.float64))
        out = model.decode_prepared(zt[:, : model.latent_dim], prepared)[..., channel]
    return out.numpy() * schema.output_norm.scale[channel] + schema.output_norm.offset[channel]


def _check_departures(model, analysis, name: str, first_window: int) -> int:
    """Compare O-A (every window) and O-B (windows from ``first_window``) with the reference.

    Output times are the observation frames: the analysis of the window of an
    observation at output time ``t`` is the output's state at ``t``, its background the
    previous window's last output state run forward.
    """
    schema = model.schema
    channel = schema.variables.index(name)
    z = _states(model, analysis)
    times = analysis.time.values
    which = analysis.window_index.values
    dim = f"{name}_obs"
    checked = 0
    for j in range(analysis.sizes[dim]):
        ob = analysis.isel({dim: j})
        t = int(np.flatnonzero(times == ob[f"{dim}_time"].values)[0])
        w = int(ob[f"{name}_obs_window"])
        assert which[t] == w
        where = np.array([[float(ob[f"{dim}_{c}"]) for c in schema.coords]])
        y = float(ob[f"{name}_obs_value"])
        after = _decoded(model, z[t], where, channel, 0)[:, 0]
        scale = max(abs(y), float(np.abs(after).max()), 1.0)
        tol = 1e-9 * scale
        assert abs(float(ob[f"{name}_obs_minus_analysis"]) - (y - after.mean())) < tol
        assert abs(float(ob[f"{name}_analysis_spread_at_obs"]) - after.std(ddof=1)) < tol
        if w < first_window:
            continue
        prev = int(np.flatnonzero(which == w - 1)[-1])
        before = _decoded(model, z[prev], where, channel, t - prev)[:, 0]
        assert abs(float(ob[f"{name}_obs_minus_background"]) - (y - before.mean())) < tol
        assert abs(float(ob[f"{name}_background_spread_at_obs"]) - before.std(ddof=1)) < tol
        checked += 1
    return checked


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_levda_departures_equal_the_decoded_background_and_analysis(model, truth):
    obs = _obs(truth)
    out = truth.drop_vars(["eta", "u"]).levda.assimilate(obs, model, LEVDA(window=2), run=RUN)
    assert out.sizes["eta_obs"] == obs.sizes["obs"]
    assert out.eta_obs_window.values.tolist() == sorted(out.eta_obs_window.values.tolist())
    assert _check_departures(model, out, "eta", first_window=1) > 0
    assert (out.eta_obs_flag.values == 0).all()
    assert out.attrs["n_observations_rejected"] == 0
    assert out.window_n_obs_rejected.values.tolist() == [0] * out.sizes["window"]
    # the observations as given, in their units
    assert out.eta_obs_value.attrs["units"] == "m"
    np.testing.assert_allclose(np.sort(out.eta_obs_value.values), np.sort(obs.eta.values))
    np.testing.assert_allclose(out.eta_obs_error_std.values, 0.05)
    lats = np.sort(np.unique(out.eta_obs_lat.values))
    np.testing.assert_allclose(lats, np.unique(obs.lat.values), rtol=0, atol=1e-9)


def _tsunami():
    """A small tsunami, its observations, the output grid and the simulator as the model."""
    cfg = tsunami.TsunamiConfig(nx=8, ny=8, n_frames=4)
    truth = tsunami.simulate(**tsunami.sample_sources(1, seed=3, config=cfg), config=cfg)
    truth = truth.isel(run=0)
    obs = observe.observe(truth, observe.GridStride(3), noise_ratio=0.1, seed=0)
    return obs, truth.drop_vars(["u", "v", "eta", "run"]), TsunamiModel(cfg)


def test_letkf_departures_equal_the_decoded_background_and_analysis():
    obs, where, model = _tsunami()
    run = RunOptions(members=6, progress=False)
    out = where.levda.assimilate(obs, model, LETKF(Inflation(1.1)), run=run)
    checked = sum(_check_departures(model, out, v, first_window=1) for v in ("eta", "u", "v"))
    assert checked > 0


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_gross_error_is_rejected_and_the_analysis_is_that_without_it(model, truth):
    obs = _obs(truth)
    bad = 7
    wrong = obs.copy(deep=True)
    wrong["eta"][bad] = wrong["eta"][bad] + 100.0  # 2000 error standard deviations
    target = truth.drop_vars(["eta", "u"])
    checked = RunOptions(members=4, dtype="float64", progress=False,
                         quality_control=GrossErrorCheck(threshold=50.0))  # fmt: skip
    with pytest.warns(UserWarning, match="rejected 1 of"):
        out = target.levda.assimilate(wrong, model, LEVDA(window=2), run=checked)
    without = target.levda.assimilate(obs.drop_isel(obs=bad), model, LEVDA(window=2), run=RUN)
    flags = out.eta_obs_flag.values
    assert flags.tolist().count(1) == 1
    rejected = int(np.flatnonzero(flags == 1)[0])
    assert float(out.eta_obs_value[rejected]) == pytest.approx(float(wrong.eta[bad]))
    assert abs(float(out.eta_obs_minus_background[rejected])) > 50 * 0.05
    assert out.attrs["n_observations_rejected"] == 1
    assert out.attrs["n_observations_used"] == obs.sizes["obs"] - 1
    assert out.window_n_obs_rejected.values.sum() == 1
    assert out.sizes["eta_obs"] == obs.sizes["obs"]  # kept, flagged
    for name in ("latent_state", "a", "b", "eta", "u"):
        np.testing.assert_allclose(out[name].values, without[name].values, rtol=1e-12, atol=1e-12)
    assert (out.window_n_obs.values == without.window_n_obs.values).all()


def test_letkf_rejects_a_gross_error_and_analyses_the_rest_as_without_it():
    obs, where, model = _tsunami()
    bad = 20
    wrong = obs.copy(deep=True)
    wrong["eta"][bad] = wrong["eta"][bad] + 1e3 * wrong["eta_std"][bad]
    checked = RunOptions(members=6, progress=False, quality_control=GrossErrorCheck(30.0))
    with pytest.warns(UserWarning, match="rejected"):
        out = where.levda.assimilate(wrong, model, LETKF(Inflation(1.1)), run=checked)
    # the output lists each variable's observations in the input's (time) order
    np.testing.assert_array_equal(out.eta_obs_time.values, obs.time.values)
    assert out.eta_obs_flag.values[bad] == 1
    missing = obs.copy(deep=True)
    for v in ("u", "v", "eta"):  # every rejected observation (the check finds a few more)
        missing[v][out[f"{v}_obs_flag"].values == 1] = np.nan
    run = RunOptions(members=6, progress=False)
    without = where.levda.assimilate(missing, model, LETKF(Inflation(1.1)), run=run)
    assert out.attrs["n_observations_used"] == without.attrs["n_observations_used"]
    for name in ("latent_state", "eta", "u", "v"):
        np.testing.assert_allclose(out[name].values, without[name].values, rtol=1e-12, atol=1e-12)


def test_gross_error_check_is_validated_and_refused_where_it_cannot_apply(model, truth):
    with pytest.raises(ConfigError, match=r"GrossErrorCheck\.threshold"):
        GrossErrorCheck(threshold=0.0)
    with pytest.raises(ConfigError, match="quality_control"):
        RunOptions(quality_control=3.0)
    with pytest.raises(ConfigError, match="progress"):
        RunOptions(progress="yes")
    run = RunOptions(members=4, progress=False, quality_control=GrossErrorCheck())
    with pytest.raises(ConfigError, match="OI cannot leave observations out"):
        truth.drop_vars(["eta", "u"]).levda.assimilate(_obs(truth), model, OI(), run=run)


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_a_check_that_rejects_a_whole_window_says_so(model, truth):
    run = RunOptions(members=4, progress=False, quality_control=GrossErrorCheck(1e-6))
    with pytest.raises(ObservationError, match="window 0: the gross-error check"):
        truth.drop_vars(["eta", "u"]).levda.assimilate(_obs(truth), model, LEVDA(), run=run)


def test_oi_keeps_its_observations_with_nan_departures(model, truth):
    out = truth.drop_vars(["eta", "u"]).levda.assimilate(_obs(truth), model, OI(), run=RUN)
    assert out.sizes["eta_obs"] == _obs(truth).sizes["obs"]
    assert np.isnan(out.eta_obs_minus_background.values).all()
    assert (out.eta_obs_flag.values == 0).all()


def test_cases_of_different_lengths_are_padded():
    def case(n):
        return xr.Dataset(
            {
                "h_obs_value": ("h_obs", np.arange(n, dtype=float)),
                "h_obs_flag": ("h_obs", np.zeros(n, np.int8), {"flag_values": [0, 1]}),
                "h_obs_window": ("h_obs", np.zeros(n, np.int64)),
            },
            coords={"h_obs_time": ("h_obs", np.arange(n).astype("datetime64[h]"))},
        )

    out = xr.concat(pad_cases([case(3), case(1)], ["h_obs"]), dim="case")
    assert out.h_obs_flag.values.tolist() == [[0, 0, 0], [0, FLAG_FILL, FLAG_FILL]]
    assert out.h_obs_flag.attrs["flag_values"].tolist() == [FLAG_FILL, 0, 1]
    assert out.h_obs_window.values[1].tolist() == [0, -1, -1]
    assert np.isnan(out.h_obs_value.values[1, 1:]).all()
    assert np.isnat(out.h_obs_time.values[1, 1:]).all() and not np.isnat(out.h_obs_time[0]).any()


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_progress_bar_over_the_windows_on_request_only(model, truth, capsys):
    target, obs = truth.drop_vars(["eta", "u"]), _obs(truth)
    target.levda.assimilate(obs, model, LEVDA(window=2), run=RunOptions(members=4))
    assert capsys.readouterr().err == ""  # not interactive: quiet by default
    run = RunOptions(members=4, progress=True)
    target.levda.assimilate(obs, model, LEVDA(window=2), run=run)
    assert "LEVDA windows" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_cases_with_different_numbers_of_observations(model, truth):
    one = _obs(truth)
    two = one.copy(deep=True)
    two["eta"][:5] = np.nan  # not observed: case b has 5 observations fewer
    obs = xr.concat([one, two], dim="case")
    out = truth.drop_vars(["eta", "u"]).levda.assimilate(obs, model, LEVDA(window=2), run=RUN)
    n = one.sizes["obs"]
    assert out.eta_obs_flag.dims == ("case", "eta_obs") and out.sizes["eta_obs"] == n
    assert (out.eta_obs_flag.values[1] == FLAG_FILL).sum() == 5
    assert np.isnat(out.eta_obs_time.values[1, -5:]).all()
    assert np.isfinite(out.eta_obs_minus_analysis.values[1, : n - 5]).all()
    assert out.attrs["n_observations_used"] == 2 * n - 5


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
def test_overlapping_windows_give_each_observation_its_last_window(model, truth):
    obs = _obs(truth)
    method = LEVDA(window=2, window_stride=1)  # windows of times {0, 1}, {1, 2}, ..., {4, 5}
    out = truth.drop_vars(["eta", "u"]).levda.assimilate(obs, model, method, run=RUN)
    t = np.searchsorted(truth.time.values, out.eta_obs_time.values)
    assert out.eta_obs_window.values.tolist() == np.minimum(t, 4).tolist()
    assert np.isfinite(out.eta_obs_minus_background).all()
    assert np.isfinite(out.eta_obs_minus_analysis).all()


@pytest.mark.filterwarnings("ignore:LEVDA. parameters estimated outside:UserWarning")
@pytest.mark.parametrize("method", [LEVDA(window=2, model_error=FieldAnalysis(draws=False)),
                                    OI(FieldAnalysis(draws=False))])  # fmt: skip
def test_departures_from_the_analysis_fields_with_a_field_analysis(model, truth, method):
    obs = _obs(truth)
    out = truth.drop_vars(["eta", "u"]).levda.assimilate(obs, model, method, run=RUN)
    # the observations lie on the output's grid and times: the fields' members' mean there
    at = {"time": out.eta_obs_time, "lat": out.eta_obs_lat, "lon": out.eta_obs_lon}
    fields = out.eta.mean("member").sel(at, method="nearest").values
    expected = out.eta_obs_value.values - fields
    np.testing.assert_allclose(out.eta_obs_minus_analysis_field, expected, rtol=0, atol=1e-9)
    if isinstance(method, LEVDA):  # the field analysis moves the fields towards the obs
        rms = {k: float(np.sqrt((out[f"eta_obs_minus_{k}"] ** 2).mean())) for k in
               ("analysis", "analysis_field")}  # fmt: skip
        assert rms["analysis_field"] <= rms["analysis"]
