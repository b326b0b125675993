"""The ``accessor`` step of ``l96_filters.py``: the full-state methods through the accessor.

``target.levda.assimilate(obs, Lorenz96Surrogate, method, run=..., background=...)`` on the
``run`` step's truth and observations: ETKF and LETKF with its tuning, the scaled EnSF and
4DEnVar with their inflation tuned on short runs of separate truths.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from l96_common import (
    DAPPER_PUBLISHED,
    DT,
    FORCING,
    N_VARS,
    RESULTS,
    checksum,
    core_cycle,
    initial_ensemble,
    machine,
    standard_error,
    to_json,
    twin,
)

__all__ = ["run_accessor"]

ENSF_INFLATIONS = (1.0, 1.05, 1.1, 1.2, 1.3)
ENSF_SENSITIVITY = ((50, 1.2), (50, 1.3))  # (steps, inflation): fewer steps, short run only
FOURDENVAR_INFLATIONS = {
    24: (1.0, 1.01, 1.02, 1.04, 1.06),
    7: (1.02, 1.04, 1.06, 1.08, 1.1, 1.15, 1.2),
}
FOURDENVAR_WINDOWS = (1, 5)


class AccessorTwin:
    """The truth and observations as xarray, and the accessor run on them with the simulator."""

    def __init__(self, truth: np.ndarray, obs: np.ndarray) -> None:
        import torch
        import xarray as xr

        from xlevda.systems.lorenz96 import Lorenz96Config, Lorenz96Surrogate

        self.truth = truth
        times, sites = DT * np.arange(len(truth)), np.arange(N_VARS, dtype=float)
        self.target = xr.Dataset(coords={"time": times, "site": sites})
        dims = ("time", "site")
        self.obs = xr.Dataset(
            {"x": (dims, obs), "x_std": (dims, np.ones_like(obs))},
            coords={"time": times[1:], "site": sites},
        )
        self.model = Lorenz96Surrogate(
            Lorenz96Config(n=N_VARS, dt=DT), n_frames=len(truth), dtype=torch.float64
        )

    def background(self, members: int, seed: int):
        """The ``run`` step's initial ensemble as fields at time 0, forcing F = 8 per member.

        Every member has the true forcing, so its ensemble spread is zero and the analyses
        leave it unchanged (as in DAPPER's setting, where F is known).
        """
        import xarray as xr

        x0 = initial_ensemble(self.truth[0], members, seed)
        return xr.Dataset(
            {"x": (("member", "site"), x0), "forcing": ("member", np.full(members, FORCING))},
            coords={"site": self.target.site, "time": self.target.time[0]},
        )

    def assimilate(self, config, seed: int):
        """``(output Dataset, wall seconds)``: ``target.levda.assimilate`` from ``background``;
        ``config`` is ``(method, run options)``."""
        import xlevda  # noqa: F401  (registers the accessor)

        start = time.perf_counter()
        method, run = config
        out = self.target.levda.assimilate(
            self.obs, self.model, method, run=run, background=self.background(run.members, seed)
        )
        return out, time.perf_counter() - start


def _scores(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> dict:
    """Time-averaged RMSE (with its standard error) and spread of ensemble means (T, N)."""
    rmse = np.sqrt(((mean - truth) ** 2).mean(-1))
    spread = np.sqrt((std**2).mean(-1))
    if not np.isfinite(rmse).all():
        return {"rmse_a": float("inf"), "diverged": True, "n_times": len(rmse)}
    return {
        "rmse_a": round(float(rmse.mean()), 4),
        "rmse_a_sem": round(standard_error(rmse), 4) if len(rmse) >= 200 else None,
        "spread_a": round(float(spread.mean()), 4),
        "n_times": len(rmse),
    }


def accessor_scores(out, truth: np.ndarray, burn_in: int, fourdenvar: bool) -> dict:
    """Scores of an accessor output at the observation times after ``burn_in`` cycles.

    Filters: the output at an observation time is the analysis there, so this is the ``run``
    step's definition.  4DEnVar: ``rmse_a`` is at the last observation time of every window
    (the window-start analysis run forward across the window: it has used the observations
    up to that time and no later ones, as a filter's analysis); ``window_start`` at each window
    start (the analysis proper, which has used the window's later observations too: a
    smoother); ``every_time`` at every observation time (start, forecasts inside the window,
    end).
    """
    z = out.latent_state.values  # (T, K, N), float64
    mean, std = z.mean(1), z.std(1, ddof=1)
    t = np.arange(len(z))
    after = t > burn_in
    if not fourdenvar:
        score = _scores(mean[after], std[after], truth[after])
    else:
        window = out.window_index.values
        last = np.r_[window[1:] != window[:-1], True]
        first = np.isin(t, out.window_anchor_step.values)
        score = _scores(mean[after & last], std[after & last], truth[after & last])
        for name, sel in (("window_start", after & first), ("every_time", after)):
            score[name] = _scores(mean[sel], std[sel], truth[sel])
    forcing = out.forcing.values[-1]
    score["forcing_final"] = {
        "mean": round(float(forcing.mean()), 6),
        "std": float(f"{forcing.std(ddof=1):.3g}"),
    }
    return score


def _fullstate(name: str, members: int, inflation: float, radius=None, steps=100, window=None):
    """``(method, run options)`` of the full-state method ``name``; float64 (the default)."""
    import xlevda
    from xlevda.methods import EnSFConfig, Inflation, Localization

    loc = None if radius is None else Localization(radius)
    if name == "EnSF":
        method = xlevda.EnSF(
            ensf=EnSFConfig(steps=steps), obs_scale=0.3, inflation=Inflation(inflation)
        )
    elif name == "4DEnVar":
        method = xlevda.FourDEnVar(
            inflation=Inflation(inflation), localization=loc, window=window or 5
        )
    else:
        method = xlevda.LETKF(Inflation(inflation), loc)
    return method, xlevda.RunOptions(members=members)


def _accessor_run(twin_, config, burn_in: int, seed: int) -> dict:
    from xlevda.errors import VariableError

    try:
        out, wall = twin_.assimilate(config, seed)
    except VariableError as err:
        return {"rmse_a": float("inf"), "diverged": True, "error": str(err)[:200]}
    cycles = len(twin_.truth) - 1
    score = accessor_scores(out, twin_.truth, burn_in, config[0].name == "4DEnVar")
    return {
        **score,
        "wall_s": round(wall, 2),
        "ms_per_cycle": round(1000 * wall / cycles, 3),
        "cycles": cycles,
        "burn_in_cycles": burn_in,
    }


def _tune(label, make, grid, twins, burn_in, log) -> tuple[dict, list[dict]]:
    """Grid search as in ``run``: the setting with the smallest worst-case RMSE wins."""
    rows = []
    for settings in grid:
        scores = [_accessor_run(t, make(**settings), burn_in, i) for i, t in enumerate(twins)]
        worst = max(s["rmse_a"] for s in scores)
        rows.append(
            {
                **settings,
                "worst_rmse_a": worst,
                "rmse_a": [s["rmse_a"] for s in scores],
                "spread_a": [s.get("spread_a") for s in scores],
                "wall_s": [s.get("wall_s") for s in scores],
            }
        )
        log(f"tune {label} {settings}: worst {worst} ({scores[0].get('wall_s')} s)")
    return min(rows, key=lambda r: r["worst_rmse_a"]), rows


def _accessor_filters(long_twin, report, truth, obs, burn_in, init_seed, log) -> dict:
    """ETKF and LETKF with the run step's tuning; the core functions again, same draws."""
    results: dict = {}
    for name in ("ETKF", "LETKF"):
        core = report["xlevda"][name]
        k, infl, radius = core["members"], core["inflation"], core["localization_radius"]
        config = _fullstate(name, k, infl, radius)
        out, wall = long_twin.assimilate(config, init_seed)
        score = accessor_scores(out, truth, burn_in, False)
        reference, core_wall = core_cycle(truth, obs, k, infl, radius, init_seed)
        core_mean = reference.analysis_mean.numpy()
        core_score = _scores(
            core_mean[burn_in:], reference.analysis_std.numpy()[burn_in:], truth[1 + burn_in :]
        )
        diff = np.abs(out.latent_state.values.mean(1)[1:] - core_mean).max(-1)
        apart = np.nonzero(diff > 1e-6)[0]
        results[name] = {
            "members": k,
            "inflation": infl,
            "localization_radius": radius,
            **score,
            "wall_s": round(wall, 2),
            "ms_per_cycle": round(1000 * wall / len(obs), 3),
            "core_functions_same_process": {**core_score, "wall_s": round(core_wall, 2)},
            "core_functions_run_step": core["rmse_a"],
            "rmse_a_minus_core": round(score["rmse_a"] - core_score["rmse_a"], 4),
            "max_abs_mean_difference_first_100_cycles": float(f"{diff[:100].max():.3g}"),
            "first_cycle_mean_difference_above_1e-6": int(apart[0]) + 1 if len(apart) else None,
            "dapper_published_rmse_a": DAPPER_PUBLISHED[name],
            "relative_difference": round(score["rmse_a"] / DAPPER_PUBLISHED[name] - 1, 3),
            "within_20_percent": abs(score["rmse_a"] / DAPPER_PUBLISHED[name] - 1) <= 0.2,
        }
        log(f"{name}: {results[name]}")
    return results


def _accessor_ensf(args, long_twin, tune_twins, truth, obs, burn_in, init_seed, log):
    """The scaled EnSF, N = 24: ``(result, tuning, cycles of its long run)``."""
    ensf_twin = long_twin
    if args.ensf_cycles and args.ensf_cycles < len(obs):
        ensf_twin = AccessorTwin(truth[: args.ensf_cycles + 1], obs[: args.ensf_cycles])
    ensf_tune_twins = [
        AccessorTwin(t.truth[: args.ensf_tune_cycles + 1], t.obs.x.values[: args.ensf_tune_cycles])
        for t in tune_twins[: args.ensf_tune_seeds]
    ]
    grid = [{"steps": args.ensf_steps, "inflation": infl} for infl in ENSF_INFLATIONS]
    best, rows = _tune(
        "EnSF",
        lambda **kw: _fullstate("EnSF", 24, kw["inflation"], steps=kw["steps"]),
        grid,
        ensf_tune_twins,
        args.accessor_tune_burn_in,
        log,
    )
    sensitivity = [
        {
            "steps": steps,
            "inflation": infl,
            **_accessor_run(
                ensf_tune_twins[0],
                _fullstate("EnSF", 24, infl, steps=steps),
                args.accessor_tune_burn_in,
                0,
            ),
        }
        for steps, infl in ENSF_SENSITIVITY
    ]
    for row in sensitivity:
        log(f"EnSF sensitivity (short run only): {row}")
    tuning = {"grid": rows, "fewer_steps_short_run_only": sensitivity}
    score = _accessor_run(
        ensf_twin,
        _fullstate("EnSF", 24, best["inflation"], steps=best["steps"]),
        burn_in,
        init_seed,
    )
    result = _with_target(
        {
            "members": 24,
            "steps": best["steps"],
            "obs_scale": 0.3,
            "inflation": best["inflation"],
            **score,
        },
        DAPPER_PUBLISHED["ETKF"],
    )
    log(f"EnSF: {result}")
    return result, tuning, len(ensf_twin.obs.time)


def _accessor_fourdenvar(args, report, long_twin, tune_twins, burn_in, init_seed, log):
    """4DEnVar, N = 24 without and N = 7 with localization, windows of 1 and 5 times."""
    results: dict = {}
    tuning: dict = {}
    radius = report["xlevda"]["LETKF"]["localization_radius"]
    for k, loc in ((24, None), (7, radius)):
        for window in FOURDENVAR_WINDOWS:
            label = f"N{k}_window{window}"
            grid = [{"inflation": infl} for infl in FOURDENVAR_INFLATIONS[k]]
            best, rows = _tune(
                f"4DEnVar {label}",
                lambda inflation, k=k, loc=loc, window=window: _fullstate(
                    "4DEnVar", k, inflation, loc, window=window
                ),
                grid,
                tune_twins,
                args.accessor_tune_burn_in,
                log,
            )
            tuning[f"4DEnVar_{label}"] = rows
            config = _fullstate("4DEnVar", k, best["inflation"], loc, window=window)
            score = _accessor_run(long_twin, config, burn_in, init_seed)
            results[f"4DEnVar_{label}"] = _with_target(
                {
                    "members": k,
                    "window": window,
                    "inflation": best["inflation"],
                    "localization_radius": loc,
                    **score,
                },
                DAPPER_PUBLISHED["ETKF" if k == 24 else "LETKF"],
            )
            log(f"4DEnVar {label}: {results[f'4DEnVar_{label}']}")
    return results, tuning


def run_accessor(args: argparse.Namespace) -> None:
    """The full-state methods through ``ds.levda.assimilate`` on the ``run`` step's data."""
    import torch

    torch.set_num_threads(1)
    step_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - step_start:6.0f} s] {msg}", flush=True)

    report = json.loads(RESULTS.read_text())
    truth, obs = np.load(args.data / "truth.npy"), np.load(args.data / "obs.npy")
    if checksum(truth, obs) != report["setting"]["data_checksum"]:
        raise SystemExit(f"{args.data} does not hold the data of {RESULTS}: rerun 'run' first")
    burn_in, seed = report["setting"]["burn_in_cycles"], report["setting"]["seed"]
    init_seed = seed + 2  # the run step's initial ensemble of the long runs
    long_twin = AccessorTwin(truth, obs)
    tune_twins = [
        AccessorTwin(*twin(args.accessor_tune_cycles, seed + 100 + i))
        for i in range(args.accessor_tune_seeds)
    ]
    results = _accessor_filters(long_twin, report, truth, obs, burn_in, init_seed, log)
    tuning: dict = {}
    results["EnSF"], tuning["EnSF"], ensf_cycles = _accessor_ensf(
        args, long_twin, tune_twins, truth, obs, burn_in, init_seed, log
    )
    fourdenvar_results, fourdenvar_tuning = _accessor_fourdenvar(
        args, report, long_twin, tune_twins, burn_in, init_seed, log
    )
    results |= fourdenvar_results
    tuning |= fourdenvar_tuning

    report["accessor"] = {
        "note": "target.levda.assimilate(obs, Lorenz96Surrogate, method, run=RunOptions(...), "
        "background=fields at time 0) on the run step's truth and observations, with its "
        "initial ensemble (the same draws) and averaging window; forcing F = 8 in every member "
        "(no spread, so not estimated); float64",
        "rmse_definition": "RMSE over the 40 variables of the ensemble mean (output "
        "latent_state) at the observation times after burn_in_cycles, averaged over those "
        "times; filters: the analysis at every observation time; 4DEnVar rmse_a: the last "
        "observation time of each window (start analysis run across the window, which has used "
        "no later observations), window_start: the analysis of each window start (a smoother: "
        "it has used the window's later observations), every_time: every observation time",
        "tuning": f"inflation grid on {args.accessor_tune_seeds} separate truths of the run "
        f"step's tuning seeds ({seed + 100}..), {args.accessor_tune_cycles} cycles, burn-in "
        f"{args.accessor_tune_burn_in} (EnSF: the first {args.ensf_tune_seeds}, "
        f"{args.ensf_tune_cycles} cycles); smallest "
        "worst-case rmse_a wins; 4DEnVar N = 7 uses the LETKF's localization radius",
        "ensf_long_run_cycles": ensf_cycles,
        **results,
        "tuning_runs": tuning,
        "total_wall_s": round(time.perf_counter() - step_start, 1),
        "command": " ".join(
            ["OMP_NUM_THREADS=1 python benchmarks/accuracy/l96_filters.py accessor", *sys.argv[2:]]
        ),
        "machine": machine(),
    }
    RESULTS.write_text(to_json(report))
    log(f"updated {RESULTS}")


def _with_target(entry: dict, published: float) -> dict:
    return {
        **entry,
        "dapper_published_rmse_a": published,
        "relative_difference": round(entry["rmse_a"] / published - 1, 3),
        "within_20_percent": abs(entry["rmse_a"] / published - 1) <= 0.2,
    }
