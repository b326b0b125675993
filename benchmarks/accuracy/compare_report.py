"""Figures, tables and Markdown of the method comparison (``compare.py``).

Imported by ``compare.py`` as a sibling module; the functions read the ``scores.nc`` Dataset
that ``compare.py`` collects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
from compare_settings import COLORS, FLOOR, LEVDA_EQUAL_K, PRIOR

__all__ = [
    "plot",
    "sweep_table",
    "table",
    "targets",
    "write_markdown",
]


def _at(obj, **labels):
    """``obj.sel(**labels)`` by position: with this xarray, ``sel`` of one string label kept the
    dimension (size 1), so labels are looked up and selected with ``isel``."""
    return obj.isel({dim: list(obj[dim].values).index(value) for dim, value in labels.items()})


def _hours(ds: xr.Dataset) -> np.ndarray:
    return ((ds.time - ds.time[0]) / np.timedelta64(1, "h")).values


def plot(ds: xr.Dataset, out: Path) -> list[str]:
    """The figures (PNG); returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours, names = _hours(ds), []
    shown = [m for m in ds.method.values if m != LEVDA_EQUAL_K]
    scored = [m for m in shown if m != FLOOR]

    def save(fig, name: str) -> None:
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        names.append(name)

    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    for m in shown:
        d = _at(ds, method=m).mean("case")
        lo, hi = d.member_err_mean - d.member_err_std, d.member_err_mean + d.member_err_std
        ax.fill_between(hours, lo, hi, color=COLORS[m], alpha=0.12)
        ax.plot(hours, d.rrmse, color=COLORS[m], label=m, ls="--" if m == FLOOR else "-")
    ax.set(yscale="log", xlabel="hours since the source", ylabel="relative RMSE (u, v, eta)")
    ax.set_title("Ensemble-mean relative RMSE (mean over cases); band: member-wise error +- std")
    ax.legend()
    save(fig, "rrmse.png")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
    for m in scored:
        d = _at(ds, method=m).mean("case")
        axes[0].plot(hours, d.ser, color=COLORS[m], label=m)
        axes[1].plot(hours, d.crps_eta, color=COLORS[m], label=m)
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set(
        xlabel="hours since the source", ylabel="spread / error", title="Spread-error ratio"
    )
    axes[1].set(
        xlabel="hours since the source", ylabel="CRPS of eta (m)", title="CRPS of eta", yscale="log"
    )
    axes[0].legend()
    save(fig, "ser_crps.png")

    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for m in ds.method.values:
        d = _at(ds.param_err, method=m)
        if bool(np.isfinite(d).any()):
            ax.plot(hours, 100 * d.mean("case"), color=COLORS[m], label=m)
    ax.set(xlabel="hours since the source", ylabel="% of the prior range", yscale="log")
    ax.set_title("Source-position RMSE of the ensemble mean (mean of src_lat, src_lon)")
    ax.legend()
    save(fig, "parameters.png")

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for j, m in enumerate(ds.sweep_method.values):
        err = ds.sweep_rrmse.isel(sweep_method=j).mean("time")
        ax.errorbar(
            ds.coverage,
            err.mean("case"),
            yerr=err.std("case"),
            marker="o",
            capsize=3,
            color=COLORS[str(m)],
            label=str(m),
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="observed grid cells (%)",
        ylabel="time-mean relative RMSE",
    )
    ax.set_xticks(
        ds.coverage.values,
        [f"{c:.2g}\ns={st}" for c, st in zip(ds.coverage.values, ds.stride.values, strict=True)],
    )
    ax.minorticks_off()
    ax.set_title("LEVDA vs 4DEnVar over observation strides (mean +- std over cases)")
    ax.legend()
    save(fig, "strides.png")
    return names


def _fmt(values: xr.DataArray, pattern: str, scale: float = 1.0) -> str:
    per_case = values.mean("time") * scale
    if not bool(np.isfinite(per_case).any()):
        return "--"
    text = pattern.format(float(per_case.mean()))
    if per_case.sizes["case"] > 1:
        text += f" +- {pattern.format(float(per_case.std()))}"
    return text


def table(ds: xr.Dataset) -> str:
    """Markdown table of the time-mean scores (mean +- std over cases) and runtimes."""
    lines = [
        "| method | K | rel. RMSE | spread/error | CRPS eta (m) | param. error (%) | runtime (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    settings = json.loads(ds.attrs["settings"])
    for m in ds.method.values:
        d = _at(ds, method=m)
        latent = m in ("LEVDA", "LD-EnSF")
        k = settings["latent_members"] if latent else settings["full_members"]
        k = "--" if m == FLOOR else k
        runtime = f"{float(d.runtime):.2f} (n={int(d.runtime_count)})" if d.runtime_count else "--"
        lines.append(
            f"| {m} | {k} | {_fmt(d.rrmse, '{:.3f}')} | {_fmt(d.ser, '{:.2f}')} | "
            f"{_fmt(d.crps_eta, '{:.4f}')} | {_fmt(d.param_err, '{:.2f}', 100)} | "
            f"{runtime} |"
        )
    lines.append(
        f"| LD-EnSF encoder training | -- | | | | | {float(ds.encoder_training_seconds):.1f} |"
    )
    return "\n".join(lines)


def sweep_table(ds: xr.Dataset) -> str:
    """Markdown table of the stride sweep (time-mean relative RMSE, mean +- std over cases)."""
    head = "| stride | observed cells (%) | " + " | ".join(ds.sweep_method.values) + " |"
    lines = [head, "|---|---|" + "---|" * ds.sizes["sweep_method"]]
    for i, st in enumerate(ds.stride.values):
        cells = [
            _fmt(ds.sweep_rrmse.isel(stride=i, sweep_method=j), "{:.3f}")
            for j in range(ds.sizes["sweep_method"])
        ]
        lines.append(f"| {st} | {float(ds.coverage[i]):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(ds: xr.Dataset) -> list[str]:
    """The issue's targets, each checked on the measured numbers (no tuning)."""
    mean = ds.mean(["time", "case"])
    out = []

    def has(m):
        return m in ds.method.values and bool(np.isfinite(_at(mean.rrmse, method=m)))

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if has("LEVDA") and has("LD-EnSF"):
        a, b = (float(_at(mean.rrmse, method=m)) for m in ("LEVDA", "LD-EnSF"))
        out.append(f"LEVDA relative RMSE <= LD-EnSF's: {a:.3f} vs {b:.3f}: {verdict(a <= b)}")
        a, b = (abs(float(_at(mean.ser, method=m)) - 1) for m in ("LEVDA", "LD-EnSF"))
        out.append(
            "LEVDA spread-error ratio closer to 1 than LD-EnSF's: "
            f"|SER - 1| = {a:.2f} vs {b:.2f}: {verdict(a < b)}"
        )
    if "4DEnVar" in ds.method.values and LEVDA_EQUAL_K in ds.method.values:
        a, b = (
            float(_at(ds.runtime, method=LEVDA_EQUAL_K)),
            float(_at(ds.runtime, method="4DEnVar")),
        )
        out.append(
            f"LEVDA >= 100x faster than full-state 4DEnVar at equal K = 40: {a:.2f} s vs "
            f"{b:.2f} s, speed-up {b / a:.2f}x: {verdict(b / a >= 100)}"
        )
    sweep = ds.sweep_rrmse.mean(["time", "case"])
    for st, text in (
        (2, "4DEnVar competitive with LEVDA at stride 2"),
        (16, "4DEnVar worse than LEVDA at stride 16 (0.39 %)"),
    ):
        if st in ds.stride.values:
            lev, env = (float(_at(sweep, stride=st, sweep_method=m)) for m in ("LEVDA", "4DEnVar"))
            ok = env <= 1.5 * lev if st == 2 else env > lev
            crit = " (criterion: 4DEnVar error at most 1.5x LEVDA's)" if st == 2 else ""
            out.append(f"{text}: LEVDA {lev:.3f}, 4DEnVar {env:.3f}{crit}: {verdict(ok)}")
    return out


def write_markdown(ds: xr.Dataset, figures: list[str], path: Path, command: str, sha: str) -> None:
    """``docs/compare.md``: settings, tables, target checks, figures, how to regenerate."""
    s = json.loads(ds.attrs["settings"])
    rel = Path("results/compare")
    coverage = float(_at(ds.coverage, stride=s["stride"]))
    failed = "\n".join(f"- {f}" for f in json.loads(ds.attrs["failures"])) or "none"
    text = (
        f"""# Methods side by side on the tsunami twin

Generated by `{command}` (do not edit by hand). Machine: {ds.attrs["machine"]}, one torch
thread; surrogate `load_pretrained("tsunami")` sha256 `{sha}`.

## Set-up

- Truth: `xlevda.systems.tsunami.simulate` on the 48x48 grid (51 frames over about 11.8 h),
  sources from `sample_sources` with seeds {s["seeds"]} (one case each).
- Observations: u, v and eta at every frame at `GridStride({s["stride"]})` (10x10 buoys,
  100 km apart as in the paper's 10x10 network on 150x150; {coverage:.2f} % of the 48x48
  cells, {ds.attrs["n_observations_main"]} values per case), noise {100 * s["noise"]:.0f} % of
  each variable's truth standard deviation.
- LEVDA: accessor, `LEVDA(window={s["window"]})`, `RunOptions(members={s["latent_members"]})`
  (defaults otherwise). `{LEVDA_EQUAL_K}` is the same with K = {s["full_members"]} (runtime at
  equal K).
- LD-EnSF: `ldensf_filter` with `LDEnSFConfig(members={s["latent_members"]})`, EnSF
  {s["ensf_steps"]} steps; LSTM encoder (`EncoderConfig(epochs={s["encoder_epochs"]})`) trained
  on {s["train_runs"]} simulator runs observed at the network; training time reported apart.
- Full-state methods, K = {s["full_members"]}, through the accessor (`LETKF`, `EnSF`,
  `FourDEnVar`, float32 as LEVDA) with the simulator as the model (`TsunamiModel`: its C-grid
  prognostic u, v, eta, N = 6816); members start at rest with bumps at sources drawn from the
  prior, and estimate the source by state augmentation (not localized).
  LETKF: `LETKF(inflation=Inflation({s["inflation"]}), localization=Localization(r))`,
  R-localization with Gaspari-Cohn support r = {s["radius"]} grid cells (passed in km), the
  inflation applied also where no observation reaches, analysis every frame. EnSF:
  `EnSF(EnSFConfig(steps={s["ensf_steps"]}))` (default `EnSFConfig` otherwise, no inflation),
  coordinates scaled per variable as LD-EnSF scales its latent state (obs_scale 0.3; plain
  standardized coordinates diverged), analysis every frame, no localization. 4DEnVar:
  strong-constraint, `FourDEnVar(inflation=Inflation({s["inflation"]}),
  localization=Localization(r), window={s["window"]})`: windows of {s["window"]} frames,
  the same support r, one outer loop.
  `{PRIOR}` is the full-state prior ensemble run without assimilation; `{FLOOR}` is the
  surrogate run at the true source (no assimilation): the error floor of the latent methods.
- Scores per frame: relative RMSE of the ensemble mean of (u, v, eta), each variable divided by
  its truth standard deviation; spread-error ratio; CRPS of eta; RMSE of the ensemble-mean source
  position as a fraction of the prior range. Tables: mean over frames, then mean +- std over cases.
- Runtimes: wall-clock seconds of the whole assimilation of one case (LEVDA and LD-EnSF include
  decoding every frame onto the grid), median of the runs on the main network
  (n = runs counted), all measured in the same process.

## Results

{table(ds)}

### LEVDA vs 4DEnVar over observation strides (time-mean relative RMSE)

{sweep_table(ds)}

### Failures

{failed}

### Targets of the issue

"""
        + "\n".join(f"- {t}" for t in targets(ds))
        + "\n\n## Figures\n\n"
        + "\n".join(f"![{f}]({rel / f})" for f in figures)
        + """

## Files

`docs/results/compare/scores.nc` holds every score per method, case and frame, the runtimes and
the stride sweep; the table above is `docs/results/compare/table.md`.

    OMP_NUM_THREADS=1 python benchmarks/accuracy/compare.py          # everything
    OMP_NUM_THREADS=1 python benchmarks/accuracy/compare.py --quick  # small version, a few minutes
"""
    )
    path.write_text(text)
