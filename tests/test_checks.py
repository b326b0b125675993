"""Warnings and records of analyses that leave what the surrogate has learned (xlevda.checks)."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

import xlevda.methods.levda as levda_module
from tests.test_api import LEV, RUN, point_obs, target
from xlevda.checks import misfit_not_reduced, params_outside
from xlevda.errors import CoordinateError, VariableError
from xlevda.surrogates.schema import Affine, SurrogateSchema

HORIZON = "2026-01-01T05:00:00.000000000"  # the tiny surrogate's last training frame (6 hourly)


def messages(record, pattern: str) -> list[str]:
    return [str(w.message) for w in record if re.search(pattern, str(w.message))]


def test_params_outside_against_the_range_of_each_parameter():
    schema = dataclasses.replace(
        SurrogateSchema.minimal(n_frames=2),
        params=("p", "q"),
        param_attrs=({}, {}),
        param_norm=Affine.from_range([0.0, 10.0], [1.0, 20.0]),
        param_range=((0.0, 1.0), (10.0, 20.0)),
    )
    u = np.array([[0.5, 15.0], [1.0, 10.0], [1.1, 15.0], [0.5, 9.9], [-0.1, 25.0]])
    z = np.concatenate([np.zeros((5, 3)), schema.param_norm.normalize(u)], -1)
    expected = np.array([[0, 0], [0, 0], [1, 0], [0, 1], [1, 1]], bool)
    np.testing.assert_array_equal(params_outside(z, schema), expected)


def test_misfit_flag_needs_no_reduction_and_a_misfit_above_the_noise():
    background = np.array([[10.0, 12.0, 11.0]] * 4)
    analysis = np.array(
        [
            [2.0, 3.0, 50.0],  # median 3 < 11: reduced
            [11.0, 11.0, 0.0],  # median 11 = 11: not reduced
            [20.0, 30.0, 40.0],  # worse
            [np.nan] * 3,  # nothing observed
        ]
    )
    flags = misfit_not_reduced(analysis, background, np.full(4, 5.0))
    assert flags.tolist() == [False, True, True, False]
    # at the noise level (e.g. uninformative observations): nothing to gain, no flag
    assert not misfit_not_reduced(analysis, background, np.full(4, 100.0)).any()


def test_parameters_stay_inside_the_training_range_by_default(model, truth):
    """Bounded parameters: every member's estimate lies strictly inside the range, no flag."""
    where = target(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        an = where.levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    for p, (lo, hi) in zip(("a", "b"), model.schema.param_range, strict=True):
        u = an[p].values
        assert ((u > lo) & (u < hi)).all(), (p, u.min(), u.max())
        assert not an[f"window_{p}_outside_training_range"].any()


def test_parameters_outside_the_training_range_warn_and_are_flagged(model, truth):
    """Without bounds the tiny surrogate's estimates of b leave its range."""
    where, free = target(truth), dataclasses.replace(LEV, bounded_parameters=False)
    with pytest.warns(UserWarning, match="outside the surrogate's training range") as record:
        an = where.levda.assimilate(point_obs(truth), model, free, run=RUN)
    (message,) = messages(record, "training range")
    flags = {p: an[f"window_{p}_outside_training_range"] for p in ("a", "b")}
    assert flags["b"].dims == ("window", "member")
    assert flags["b"].any()  # the tiny surrogate's estimates of b leave its range
    lo, hi = model.schema.param_range[1]
    for p, (lo, hi) in zip(("a", "b"), model.schema.param_range, strict=True):
        n = int(flags[p].sum())
        assert (f"{p}: {n} of 18 " in message) == (n > 0)
        # each window's parameters (constant inside it) against the range
        for t, w in enumerate(an.window_index.values):
            u = an[p].isel(time=t).values
            np.testing.assert_array_equal(flags[p].isel(window=w), (u < lo) | (u > hi))


def test_targets_past_the_trained_horizon_are_an_error_or_warned_forecasts(model, truth):
    where = target(truth)
    longer = where.reindex(time=where.time.values[0] + np.arange(8) * np.timedelta64(1, "h"))
    pattern = (
        rf"target time 'time' runs to 2026-01-01T07:00:00.000000000, past the surrogate's "
        rf"trained horizon {HORIZON} \(frame 5, the last training frame\): 2 of 8 target times"
    )
    with pytest.raises(CoordinateError, match=pattern + r"; the surrogate would extrapolate"):
        longer.levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    forecast = dataclasses.replace(RUN, past_horizon="forecast")
    with pytest.warns(UserWarning, match=pattern):
        an = longer.levda.assimilate(point_obs(truth), model, LEV, run=forecast)
    assert an.attrs["surrogate_trained_horizon"] == HORIZON
    assert an.attrs["n_target_times_past_horizon"] == 2
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inside = where.levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    assert not messages(record, "horizon")
    assert inside.attrs["surrogate_trained_horizon"] == HORIZON
    assert inside.attrs["n_target_times_past_horizon"] == 0


def keep_the_background(monkeypatch):
    """Make every LEVDA analysis its background (as if every member's optimization failed)."""
    solve = levda_module.solve_window

    def stuck(surrogate, z_background, *args, **kwargs):
        res = solve(surrogate, z_background, *args, **kwargs)
        return dataclasses.replace(res, z_analysis=z_background, misfit=res.misfit_background)

    monkeypatch.setattr(levda_module, "solve_window", stuck)


def test_analyses_no_better_than_their_backgrounds_warn_and_are_recorded(
    model,
    truth,
    monkeypatch,
):
    where, obs = target(truth), point_obs(truth, std=0.01)
    # the tiny surrogate fits these precise observations only with b outside its range
    free = dataclasses.replace(LEV, bounded_parameters=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        an = where.levda.assimilate(obs, model, free, run=RUN)
    assert not messages(record, "does not fit")
    assert an.window_misfit_not_reduced.values.tolist() == [0, 0, 0]
    assert (an.window_misfit < an.window_misfit_background).all()
    keep_the_background(monkeypatch)
    pattern = (
        r"LEVDA: in 3 of 3 windows \(windows 0, 1, 2\) the analysis does not fit the "
        r"observations better than its background \(median over members of misfit >= of "
        r"misfit_background, and above the observations' noise level\)"
    )
    with pytest.warns(UserWarning, match=pattern):
        stuck = where.levda.assimilate(obs, model, free, run=RUN)
    assert stuck.window_misfit_not_reduced.dims == ("window",)
    assert stuck.window_misfit_not_reduced.values.tolist() == [1, 1, 1]
    # observations with huge errors: the background already fits them, no alarm
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        vague = where.levda.assimilate(point_obs(truth, std=1e6), model, LEV, run=RUN)
    assert not messages(record, "does not fit")
    assert not vague.window_misfit_not_reduced.any()


def test_the_warnings_name_each_case(model, truth, monkeypatch):
    keep_the_background(monkeypatch)
    obs = xr.concat([point_obs(truth, std=0.01), point_obs(truth, std=1e6)], dim="case")
    with pytest.warns(UserWarning, match=r"in 3 of 6 windows \(case 0 window 0, case 0 window 1"):
        an = target(truth).levda.assimilate(obs, model, LEV, run=RUN)
    assert an.window_misfit_not_reduced.values.tolist() == [[1, 1, 1], [0, 0, 0]]


def test_members_whose_forecast_fails_are_replaced_counted_and_flagged(model, truth, monkeypatch):
    """A member whose background turns NaN (its forecast failed) restarts from the finite
    members' mean instead of stopping the cycle; it is flagged in window_replaced and warned."""
    propagate = levda_module.background_state

    def failing(model, background, anchor, run):
        z = propagate(model, background, anchor, run)
        if anchor > 0:  # every window after the first: member 3's forecast fails
            z = z.clone()
            z[3, 0] = float("nan")
        return z

    monkeypatch.setattr(levda_module, "background_state", failing)
    with pytest.warns(UserWarning, match=r"LEVDA: 2 of 18 members x windows were replaced"):
        an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    flags = an.window_replaced
    assert flags.dims == ("window", "member")
    assert flags.values.tolist() == [[False] * 6, [False, False, False, True, False, False],
                                     [False, False, False, True, False, False]]  # fmt: skip
    assert np.isfinite(an.latent_state.values).all()
    assert np.isfinite(an.eta.values).all()


def test_fewer_than_two_finite_members_is_an_error():
    z = torch.tensor([[1.0, 2.0], [float("nan"), 0.0], [float("inf"), 4.0]])
    with pytest.raises(VariableError, match="fewer than 2 finite members"):
        levda_module.finite_background(z)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_values(model, truth, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """Windows saved as they complete; a run stopped in window 2 resumes there and ends with
    the values of an uninterrupted run; changed inputs never reuse the saved windows."""
    obs, where = point_obs(truth), target(truth)
    whole = where.levda.assimilate(obs, model, LEV, run=RUN).compute()
    run = dataclasses.replace(RUN, checkpoint=tmp_path / "ckpt")
    analyse = levda_module.LEVDA.analyse
    calls, killed = [], []

    def stop_in_window_2(self, model, window, background, run):
        calls.append(window.index)
        if window.index == 2 and not killed:
            killed.append(True)
            raise RuntimeError("killed")
        return analyse(self, model, window, background, run)

    monkeypatch.setattr(levda_module.LEVDA, "analyse", stop_in_window_2)
    with pytest.raises(RuntimeError, match="killed"):
        where.levda.assimilate(obs, model, LEV, run=run)
    assert len(list((tmp_path / "ckpt").glob("*.npz"))) == 2  # windows 0 and 1
    calls.clear()
    resumed = where.levda.assimilate(obs, model, LEV, run=run).compute()
    assert calls == [2]  # only the missing window ran
    xr.testing.assert_identical(resumed.drop_attrs(), whole.drop_attrs())
    other = where.levda.assimilate(obs, model, LEV, run=dataclasses.replace(run, seed=1))
    assert len(list((tmp_path / "ckpt").glob("*.npz"))) == 6  # another seed: new windows
    assert not np.array_equal(other.latent_state.values, whole.latent_state.values)


def test_non_finite_decoded_values_are_an_error_naming_variable_time_and_member(
    model, truth, monkeypatch
):
    """A decoder that fails only at output time never writes NaN silently."""
    an = target(truth).levda.assimilate(point_obs(truth), model, LEV, run=RUN)
    decode = type(model).decode_channel

    def failing(self, s, prepared, channel):
        out = decode(self, s, prepared, channel).clone()
        out[4, 2] = float("nan")  # an output block: (6 times, 6 members, points)
        return out

    monkeypatch.setattr(type(model), "decode_channel", failing)
    with pytest.raises(VariableError, match=r"'eta'.*output time index 4, member 2"):
        an.eta.compute()
