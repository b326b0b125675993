"""``xlevda demo [tsunami|kolmogorov|sphere]``: a twin experiment with a shipped surrogate.

A hidden truth with random unknown parameters is simulated with the system's own
simulator (the training configuration recorded in the surrogate), observed by a
fixed sensor grid at every frame with 10 % noise (tsunami: 10x10 buoys observing
u, v, eta; Kolmogorov flow: 10x10 points observing u, v; sphere: 16x8 points
observing u, v, height), and reconstructed by LEVDA (K = 100 members, tau = 5
observation times per window), estimating the parameters jointly.  The analysis
is written with :func:`xlevda.write.write` (NetCDF, or zarr by extension), a
per-window table compares it with the no-assimilation forecast (the prior
ensemble rolled out by the surrogate), and a PNG shows the fields and the error
over time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import xarray as xr

from xlevda import metrics
from xlevda.core.members import MemberMode
from xlevda.core.optim import GaussNewtonConfig, LBFGSConfig
from xlevda.errors import ConfigError
from xlevda.ldnet import LDNet
from xlevda.methods import LEVDA
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions
from xlevda.surrogates.fitreport import FitReport
from xlevda.systems import kolmogorov, observe, sphere, sphere_config, tsunami
from xlevda.write import write

__all__ = [
    "SYSTEMS",
    "DemoSystem",
    "Twin",
    "plot_twin",
    "prior_forecast",
    "quality_lines",
    "run_demo",
    "simulate_truth",
    "training_config",
    "twin_experiment",
    "twin_scores",
]


@dataclass(frozen=True)
class DemoSystem:
    """What a twin experiment needs of a benchmark system.

    Attributes
    ----------
    module : module
        The system's module, with a ``simulate(**params, config=..., progress=...)``.
    config : type
        Its configuration dataclass.
    draw : callable
        ``(seed, config) -> params`` of one run, each an array of length 1.
    main : str
        The variable shown and scored by CRPS.
    observed : tuple of str
        The observed variables.
    sensors : int
        Sensors along the longer grid axis (a ``GridStride`` network).
    """

    module: ModuleType
    config: type
    draw: Callable[[int, object], dict[str, np.ndarray]]
    main: str
    observed: tuple[str, ...]
    sensors: int


SYSTEMS = {
    "tsunami": DemoSystem(
        tsunami,
        tsunami.TsunamiConfig,
        lambda seed, cfg: tsunami.sample_sources(1, seed=seed, config=cfg),
        "eta",
        ("u", "v", "eta"),
        10,
    ),
    "kolmogorov": DemoSystem(
        kolmogorov,
        kolmogorov.KolmogorovConfig,
        lambda seed, cfg: kolmogorov.sample_reynolds(1, seed=seed),
        "vorticity",
        ("u", "v"),
        10,
    ),
    "sphere": DemoSystem(
        sphere,
        sphere_config.SphereConfig,
        lambda seed, cfg: sphere.sample_forcing(1, seed=seed, config=cfg),
        "height",
        ("u", "v", "height"),
        16,
    ),
}
"""The systems of ``xlevda demo``: each needs a shipped surrogate of that name."""


def training_config(system: DemoSystem, model):
    """The simulator configuration the surrogate was trained on (its schema's ``config``).

    Nested settings (e.g. the sphere's initial state) are not rebuilt from JSON: they must
    equal the defaults, else a :class:`ConfigError` says which differs.
    """
    recorded = json.loads(model.schema.attrs.get("config", "{}"))
    default = system.config()
    simple = {}
    for f in fields(system.config):
        if f.name not in recorded:
            continue
        value = recorded[f.name]
        if isinstance(value, dict):
            expected = json.loads(json.dumps(asdict(getattr(default, f.name)), default=str))
            if value != expected:
                raise ConfigError(
                    f"the surrogate was trained with {f.name}={value}, which differs from the "
                    f"default {expected} that the demo can simulate"
                )
            continue
        simple[f.name] = tuple(value) if isinstance(value, list) else value
    return system.config(**simple)


def simulate_truth(
    model, seed: int, system: str = "tsunami"
) -> tuple[xr.Dataset, dict[str, float]]:
    """The hidden truth of a twin experiment: one run of ``system`` with drawn parameters.

    Simulated with the configuration ``model`` was trained on (:func:`training_config`),
    refined as its training runs were (their ``refine`` attribute, e.g.
    ``tsunami.simulate(..., refine=3)``), and parameters drawn from ``seed``; returns the
    run and its parameters.
    """
    sys_ = SYSTEMS[system]
    cfg = training_config(sys_, model)
    params = sys_.draw(seed, cfg)
    attrs = model.schema.attrs
    refined = {"refine": int(attrs["refine"])} if "refine" in attrs else {}
    truth = sys_.module.simulate(**params, config=cfg, progress=False, **refined).isel(run=0)
    return truth, {k: float(v[0]) for k, v in params.items()}


def prior_forecast(model, truth: xr.Dataset, seed: int, members: int) -> xr.Dataset:
    """The no-assimilation forecast: prior parameter draws rolled out by the surrogate.

    ``members`` parameter sets drawn uniformly from the schema's ranges with ``seed``, rolled
    out at the times and points of ``truth``; dims ``(time, member, ...)``, the parameters as
    variables.  The fields are float32 (the analysis' precision) in dask chunks of the
    analysis' shape, so that scoring them runs in parallel, chunk by chunk.
    """
    rng = np.random.default_rng(seed)
    params = {
        p: xr.DataArray(rng.uniform(lo, hi, members), dims="member")
        for p, (lo, hi) in zip(model.schema.params, model.schema.param_range, strict=True)
    }
    fc = model.predict(params, times=truth.time.values, where=truth)
    fc = fc.drop_vars(list(params)).transpose("time", "member", ...).astype(np.float32)
    fc = fc.chunk(time=8, member=25)
    for p, v in params.items():
        fc[p] = v.expand_dims(time=fc.time).transpose("time", "member")
    return fc


def _stacked(ds: xr.Dataset, scale: dict[str, float]) -> xr.DataArray:
    """All fields as one state vector, each divided by its truth standard deviation."""
    return xr.concat([ds[v] / s for v, s in scale.items()], dim="variable")


def twin_scores(
    ens: xr.Dataset, truth: xr.Dataset, true_params, prior_range, main: str = "eta"
) -> xr.Dataset:
    """Scores of an ensemble against the truth, per time, computed.

    ``rrmse``, ``ser`` (spread/error) and ``member_err`` of all fields stacked, each divided by
    its truth standard deviation; ``crps`` of ``main``; ``param_err``, the parameter error
    relative to ``prior_range`` (``{name: (low, high)}``) averaged over the parameters (NaN
    where ``true_params`` is empty).
    """
    scale = {str(v): float(truth[v].std()) for v in truth.data_vars}
    state, true_state = _stacked(ens, scale), _stacked(truth, scale)
    dims = ["variable", *(d for d in truth[main].dims if d != "time")]
    rel = metrics.relative_rmse(state, true_state, dim=dims)
    ser = metrics.spread_error_ratio(state, true_state, dim=dims)
    crps_main = metrics.crps(ens[[main]], truth[[main]])[main]
    if true_params:
        perr = metrics.parameter_rmse(ens[list(true_params)], true_params, prior_range=prior_range)
        param_err = perr.to_array().mean("variable")
    else:  # no parameters to score (a model-free analysis, a truth of no single setting)
        param_err = xr.full_like(rel, np.nan)
    return xr.Dataset(
        {
            "rrmse": rel,
            "ser": ser,
            "crps": crps_main,
            "param_err": param_err,
            "member_err": metrics.member_relative_error(state, true_state, dim=dims),
        }
    ).compute()


def _table(a: xr.Dataset, f: xr.Dataset, window: np.ndarray, crps_label: str) -> str:
    head = (
        f"{'window':>6} {'frames':>7} | {'rel. RMSE':^17} | {'spread/error':^17} | "
        f"{crps_label:^19} | {'param. error':^17}\n"
        f"{'':>6} {'':>7} | {'LEVDA':>8} {'forecast':>8} | {'LEVDA':>8} {'forecast':>8} | "
        f"{'LEVDA':>9} {'forecast':>9} | {'LEVDA':>8} {'forecast':>8}"
    )
    lines = [head, "-" * len(head.splitlines()[0])]
    for w in np.unique(window):
        sel = np.nonzero(window == w)[0]
        aw, fw = a.isel(time=sel).mean("time"), f.isel(time=sel).mean("time")
        lines.append(
            f"{w:>6} {f'{sel[0]}-{sel[-1]}':>7} | {float(aw.rrmse):8.4f} {float(fw.rrmse):8.4f} | "
            f"{float(aw.ser):8.2f} {float(fw.ser):8.2f} | {float(aw.crps):9.5f} "
            f"{float(fw.crps):9.5f} | {100 * float(aw.param_err):7.2f}% "
            f"{100 * float(fw.param_err):7.2f}%"
        )
    return "\n".join(lines)


def _elapsed(time_coord: xr.DataArray) -> tuple[np.ndarray, str]:
    """Time since the first frame, in hours for datetimes, else in the model's units."""
    t = time_coord - time_coord[0]
    if np.issubdtype(t.dtype, np.timedelta64):
        return (t / np.timedelta64(1, "h")).values, "hours since the first frame"
    return np.asarray(
        t.values, float
    ), f"time since the first frame ({time_coord.attrs.get('units', '1')})"


def plot_twin(path: Path, truth, analysis, sa: xr.Dataset, sf: xr.Dataset, main: str) -> None:
    """Figure of a twin experiment written to ``path`` (needs matplotlib).

    Truth, analysis mean, error and spread of ``main`` at three frames, and the relative RMSE
    over time of the analysis (scores ``sa``) and of the forecast (scores ``sf``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [2, len(truth.time) // 2, len(truth.time) - 1]
    # a fixed layout: matplotlib's constrained layout took half of the figure's time
    fig = plt.figure(figsize=(13, 12))
    grid = fig.add_gridspec(
        len(frames) + 1, 4, left=0.06, right=0.98, bottom=0.05, top=0.97, wspace=0.3, hspace=0.35
    )
    mean = analysis[main].mean("member")
    spread = analysis[main].std("member")
    lim = float(np.abs(truth[main]).max())
    # error and spread share one scale, from the frames shown, so that they compare
    shown = {"time": frames}
    err_lim = (
        float(max(np.abs(mean - truth[main]).isel(shown).max(), spread.isel(shown).max()))
        or lim / 5
    )
    units = truth[main].attrs.get("units", "")
    for row, k in enumerate(frames):
        panels = [
            ("truth", truth[main].isel(time=k), "RdBu_r", (-lim, lim)),
            ("analysis mean", mean.isel(time=k), "RdBu_r", (-lim, lim)),
            ("error", (mean - truth[main]).isel(time=k), "RdBu_r", (-err_lim, err_lim)),
            ("spread", spread.isel(time=k), "viridis", (0, err_lim)),
        ]
        t = str(truth.time.values[k])[:16].replace("T", " ")
        for col, (title, field, cmap, (lo, hi)) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            im = field.plot(ax=ax, cmap=cmap, vmin=lo, vmax=hi, add_colorbar=False)
            ax.set_title(f"{main} {title}, t = {t}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel("")
            fig.colorbar(im, ax=ax, shrink=0.8, label=units)
    ax = fig.add_subplot(grid[len(frames), :])
    elapsed, label_t = _elapsed(truth.time)
    names = ", ".join(map(str, truth.data_vars))
    for s, label, color in ((sa, "LEVDA", "C0"), (sf, "no assimilation", "C3")):
        m, sd = s.member_err.mean("member"), s.member_err.std("member")
        ax.fill_between(elapsed, m - sd, m + sd, color=color, alpha=0.2)
        ax.plot(elapsed, s.rrmse, color=color, label=f"{label}: ensemble mean ({names})")
    ax.set_yscale("log")
    ax.set_xlabel(label_t)
    ax.set_ylabel("relative RMSE")
    ax.set_title(f"relative RMSE of ({names}) over time; band: member-wise error, mean +- std")
    ax.legend()
    fig.savefig(path, dpi=90)
    plt.close(fig)


@dataclass(frozen=True)
class Twin:
    """One twin experiment: the truth, its observations and the LEVDA analysis."""

    system: str
    truth: xr.Dataset
    true_params: dict[str, float]
    obs: xr.Dataset
    analysis: xr.Dataset
    seconds: float  # LEVDA assimilation wall time
    decode_seconds: float  # wall time of decoding the analysis' fields into memory
    scores: xr.Dataset  # per time: rrmse, ser, crps, param_err, member_err
    forecast_scores: xr.Dataset  # the same for the no-assimilation forecast


def twin_experiment(
    system: str = "tsunami",
    seed: int = 0,
    members: int = 100,
    optimizer: LBFGSConfig | GaussNewtonConfig | None = None,
    surrogate: LDNet | None = None,
    member_mode: MemberMode | None = None,
) -> Twin:
    """Simulate a hidden truth, observe it and assimilate it with the shipped surrogate.

    ``optimizer`` (with its ``jacobian`` for Gauss-Newton) and ``member_mode`` replace
    :class:`~xlevda.methods.LEVDA`'s defaults and
    ``surrogate`` the shipped surrogate of ``system``: an :class:`~xlevda.LDNet`
    trained on that system's simulations, whose recorded training configuration
    sets the simulated truth.  The analysis is decoded into memory (persisted: its
    dask arrays hold computed chunks), since it is scored, written and plotted.
    """
    if system not in SYSTEMS:
        raise ConfigError(f"unknown demo system {system!r}: expected one of {sorted(SYSTEMS)}")
    sys_ = SYSTEMS[system]
    if surrogate is not None and not isinstance(surrogate, LDNet):
        raise ConfigError(
            f"surrogate={type(surrogate).__name__}: the {system} twin needs an xlevda.LDNet "
            "trained on its simulations"
        )
    model = load_pretrained(system) if surrogate is None else surrogate
    missing = sorted(set(sys_.observed) - set(model.schema.variables))
    if missing:
        raise ConfigError(
            f"the surrogate predicts {list(model.schema.variables)}, but the {system} twin "
            f"observes {list(sys_.observed)}: {missing} missing; use a {system} surrogate"
        )
    truth, true_params = simulate_truth(model, seed, system)
    truth = truth[list(model.schema.variables)]
    space = [d for d in truth[sys_.main].dims if d != "time"]
    stride = -(-max(truth.sizes[d] for d in space) // sys_.sensors)
    obs = observe.observe(
        truth[list(sys_.observed)], observe.GridStride(stride), noise_ratio=0.1, seed=seed + 1
    )
    target = truth.drop_vars(list(truth.data_vars))
    method = LEVDA(window=5)
    if optimizer is not None:
        method = replace(method, optimizer=optimizer)
    if member_mode is not None:
        method = replace(method, member_mode=member_mode)
    run = RunOptions(members=members, seed=seed)
    t0 = time.perf_counter()
    analysis = target.levda.assimilate(obs, model, method, run=run)
    seconds = time.perf_counter() - t0
    # decoded once, then scored, written and plotted from memory
    analysis = analysis.persist()
    decode_seconds = time.perf_counter() - t0 - seconds
    forecast = prior_forecast(model, truth, seed, members)
    prior = dict(zip(model.schema.params, model.schema.param_range, strict=True))
    return Twin(
        system,
        truth,
        true_params,
        obs,
        analysis,
        seconds,
        decode_seconds,
        twin_scores(analysis, truth, true_params, prior, sys_.main),
        twin_scores(forecast, truth, true_params, prior, sys_.main),
    )


def quality_lines(quality: FitReport | None) -> list[str]:
    """What the demo says of the surrogate's quality report: a line per variable, or one
    line when the surrogate has none (or its fit held no runs out).

    Examples
    --------
    >>> quality_lines(None)
    ['surrogate quality: no quality report stored with this surrogate']
    >>> quality_lines(FitReport(("eta",), 2, ((0.1, 0.3),), (0.25,), (4,), seconds=2.0))
    ['surrogate eta: held-out relative RMSE 0.2500 (per frame: mean 0.2000, worst 0.3000)']
    """
    if quality is None:
        return ["surrogate quality: no quality report stored with this surrogate"]
    if quality.overall_errors is None:
        return [f"surrogate quality: {quality.note}"]
    return [
        f"surrogate {name}: held-out relative RMSE {overall:.4f} (per frame: mean {mean:.4f}, "
        f"worst {worst:.4f})"
        for name, overall, mean, worst in zip(
            quality.variables,
            quality.overall_errors,
            quality.mean_errors or (),
            quality.worst_errors or (),
            strict=True,
        )
    ]


def _stored_bytes(path: Path) -> int:
    """Bytes of a file, or of every file in a directory (a zarr store)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def run_demo(
    seed: int = 0,
    output: str = "levda_demo.nc",
    plot: bool = True,
    members: int = 100,
    system: str = "tsunami",
) -> int:
    """Run the twin experiment of ``system``, print and write it; returns an exit code."""
    t_start = time.perf_counter()
    twin = twin_experiment(system, seed, members)
    main = SYSTEMS[system].main
    truth, analysis = twin.truth, twin.analysis
    observed = SYSTEMS[system].observed
    n_sensors = twin.obs.sizes["obs"] // len(truth.time)
    print(
        f"{system}: hidden "
        + ", ".join(f"{p} = {v:.4g}" for p, v in twin.true_params.items())
        + f"; {twin.obs.sizes['obs']} observations of {', '.join(observed)} ({n_sensors} "
        f"sensors x {len(truth.time)} frames, 10 % noise)"
    )
    for line in quality_lines(load_pretrained(system).quality):
        print(line)
    print(
        f"\nLEVDA assimilation of {len(truth.time)} frames, K={members}: {twin.seconds:.1f} s "
        f"(fields decoded in {twin.decode_seconds:.1f} s)\n"
    )
    units = truth[main].attrs.get("units", "1")
    window = analysis.window_index.values
    print(_table(twin.scores, twin.forecast_scores, window, f"CRPS {main} ({units})"))
    est = {p: float(analysis[p].isel(time=-1).mean()) for p in twin.true_params}
    print(
        "\nestimated parameters (last window, ensemble mean): "
        + ", ".join(f"{p} = {est[p]:.4g} (true {twin.true_params[p]:.4g})" for p in est)
    )
    t_write = time.perf_counter()
    write(analysis, output, spread_step=0.1)
    print(
        f"analysis ensemble written to {output} ({_stored_bytes(Path(output)) / 1e6:.1f} MB in "
        f"{time.perf_counter() - t_write:.1f} s; fields to 0.1 x their ensemble spread)"
    )
    if plot:
        try:
            png = Path(output).with_suffix(".png")
            plot_twin(png, truth, analysis, twin.scores, twin.forecast_scores, main)
            print(f"figure written to {png}")
        except ImportError:
            print("matplotlib is not installed (pip install 'xlevda[plot]'): no figure")
    print(f"total {time.perf_counter() - t_start:.1f} s")
    return 0
