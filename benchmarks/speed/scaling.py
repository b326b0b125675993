"""Cost curves of one LEVDA analysis: time and peak memory as the work grows (issue 21, item 4).

The demo's tsunami twin (shipped 48x48 surrogate, a truth simulated by
:mod:`xlevda.systems.tsunami` with the surrogate's training configuration, 10 % noise,
``LEVDA(window=5)``, K = 100, 10x10 buoys observing u, v, eta at every frame, a 48x48 target,
51 frames) with one thing changed per axis:

- ``members``: K in 10, 30, 100, 300, 1000;
- ``observations``: observed values per window (points x 3 variables x 5 frames) from 100 to
  100,000: ``RandomPoints`` on a truth simulated at 120x120 (cells inside the surrogate's
  domain, so that up to 6,667 distinct points per frame exist); the target stays 48x48;
- ``grid``: the target grid (lat x lon) from 48x48 to 256x512 over the surrogate's domain
  (the decoder is coordinate-based, so any grid works); buoys as the demo's;
- ``frames``: the first 6, 11, 26 or 51 frames of the truth (1 to 11 windows).

``--method 4DEnVar`` measures the peer instead: full-state 4DEnVar through the same
accessor with the simulator at the training settings as its model (float32), localization
6 cells (DAPPER-style tuned on the tsunami twin: 0.036 against 0.43 with the paper's 2 cells),
inflation 1.1, windows of 5, sources drawn from the prior as its background; its fields are
its state, so the ``grid`` axis (the simulator's own grid) is not measured this way.

Each point runs in a fresh subprocess.  Times are medians over the repeats (``--repeats``; one
only where the first run took over ``--long`` seconds) of the ``assimilate`` call (window solves
and parameters; the fields stay lazy) and of decoding the fields (``.load()`` of u, v, eta:
every member, time and target cell, float32).  Peak memory is the increase of the process's
resident set (``VmHWM``, reset through ``/proc/self/clear_refs`` after the setup) over its
resident set after the setup, for the ``assimilate`` call and for the decoding.  A point whose
estimated peak (0.5 GB, plus 5x the decoded fields when they are loaded) exceeds ``--max-gb``
(6 GB) is skipped, and one whose resident set passes ``--kill-gb`` (7 GB) or that runs past
``--timeout`` is killed; either is recorded with the reason.  ``--decode stream`` decodes every
value without holding the output (summed over the members chunk by chunk).

    OMP_NUM_THREADS=1 python benchmarks/speed/scaling.py --quick            # smoke, ~2 min
    OMP_NUM_THREADS=1 python benchmarks/speed/scaling.py --axes grid --json grid.json
    python benchmarks/speed/scaling.py --merge *.json --out docs/scaling.md \
        --plot docs/scaling_curves.png
    OMP_NUM_THREADS=1 python benchmarks/speed/scaling.py --decode stream --profile members=1000

(``--profile`` runs that point once under cProfile with dask's synchronous scheduler and writes
the 25 largest cumulative and 15 largest own times of the ``assimilate`` call and the decoding.)

A measurement, not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VARIABLES = ["u", "v", "eta"]
WINDOW = 5
BASE = {"members": 100, "obs_points": None, "grid": (48, 48), "frames": 51, "method": "LEVDA"}
METHODS = ("LEVDA", "4DEnVar")
FOURDENVAR_RADIUS = 6.0  # cells
FOURDENVAR_INFLATION = 1.1
AXES = {
    "members": [10, 30, 100, 300, 1000],
    "observations": [100, 1_000, 10_000, 100_000],
    "grid": [(48, 48), (96, 96), (128, 128), (192, 192), (256, 256), (256, 512)],
    "frames": [6, 11, 26, 51],
}
QUICK = {
    "members": [10, 100],
    "observations": [100, 1_000],
    "grid": [(48, 48), (96, 96)],
    "frames": [6, 51],
}
FINE = 120  # grid of the truth observed on the observations axis


def _status(key: str) -> int:
    """``key`` (e.g. ``VmHWM``) of this process, bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_peak() -> int:
    """Reset the peak resident set to the current one; returns the current one (bytes)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def point_setting(axis: str, value, method: str = "LEVDA") -> dict:
    """The demo's setting with ``axis`` set to ``value``, analysed by ``method``."""
    s = dict(BASE, method=method)
    if axis == "members":
        s["members"] = value
    elif axis == "observations":
        s["obs_points"] = -(-value // (len(VARIABLES) * WINDOW))
    elif axis == "grid":
        s["grid"] = tuple(value)
    elif axis == "frames":
        s["frames"] = value
    return s


def output_bytes(s: dict) -> int:
    """Bytes of the decoded float32 fields of setting ``s``."""
    return s["members"] * s["frames"] * s["grid"][0] * s["grid"][1] * len(VARIABLES) * 4


def estimated_bytes(s: dict, decode: str) -> float:
    """Estimated peak memory: 0.5 GB, plus (``load``) 5x the decoded fields, as measured at
    48x48 and 96x96 with K = 100 (the ``.load()`` peak grows about 5x the output)."""
    return 0.5e9 + (5 * output_bytes(s) if decode == "load" else 0)


def build(s: dict, seed: int = 0):
    """Surrogate, target and observations of setting ``s``."""
    import xarray as xr

    from xlevda.demo import simulate_truth
    from xlevda.pretrained import load_pretrained
    from xlevda.systems import observe, tsunami

    model = load_pretrained("tsunami")
    truth, _ = simulate_truth(model, seed)
    truth = truth[VARIABLES].isel(time=slice(0, s["frames"]))
    if s["obs_points"] is None:
        stride = -(-max(truth.sizes["lat"], truth.sizes["lon"]) // 10)
        obs = observe.observe(truth, observe.GridStride(stride), noise_ratio=0.1, seed=seed + 1)
    else:
        cfg = tsunami.TsunamiConfig(nx=FINE, ny=FINE)
        src = tsunami.sample_sources(1, seed=seed, config=cfg)
        fine = tsunami.simulate(**src, config=cfg, progress=False).isel(run=0)[VARIABLES]
        fine = fine.isel(time=slice(0, s["frames"]))
        grid = model.schema.grid
        keep = {c: (fine[c] >= min(grid[c])) & (fine[c] <= max(grid[c])) for c in ("lat", "lon")}
        fine = fine.isel(lat=keep["lat"].values, lon=keep["lon"].values)
        layout = observe.RandomPoints(s["obs_points"])
        obs = observe.observe(fine, layout, noise_ratio=0.1, seed=seed + 1)
    target = truth.drop_vars(VARIABLES)
    if tuple(s["grid"]) != (truth.sizes["lat"], truth.sizes["lon"]):
        ny, nx = s["grid"]
        lat = np.linspace(float(truth.lat.min()), float(truth.lat.max()), ny)
        lon = np.linspace(float(truth.lon.min()), float(truth.lon.max()), nx)
        target = xr.Dataset(
            coords={
                "time": truth.time,
                "lat": ("lat", lat, truth.lat.attrs),
                "lon": ("lon", lon, truth.lon.attrs),
            },
            attrs=truth.attrs,
        )
    n_values = int(sum(obs[v].notnull().sum() for v in VARIABLES))
    return model, target, obs, n_values


def peer(surrogate, members: int):
    """Full-state 4DEnVar with the simulator at ``surrogate``'s training settings: model,
    method and background (prior source draws)."""
    import torch

    from xlevda.demo import SYSTEMS, training_config
    from xlevda.methods import FourDEnVar, Inflation, Localization
    from xlevda.systems import tsunami
    from xlevda.systems.tsunami_model import TsunamiModel

    cfg = training_config(SYSTEMS["tsunami"], surrogate)
    model = TsunamiModel(cfg, dtype=torch.float32)
    method = FourDEnVar(
        inflation=Inflation(multiplicative=FOURDENVAR_INFLATION),
        localization=Localization(FOURDENVAR_RADIUS * cfg.length / cfg.nx / 1e3),
        window=WINDOW,
    )
    return model, method, tsunami.sample_sources(members, seed=5_000, config=cfg)


def _decode(lazy, decode: str):
    """The fields loaded, or (``stream``) every value decoded and summed over the members
    chunk by chunk (the memory of a chunk, not of the output)."""
    if decode == "load":
        return lazy[VARIABLES].load()
    return lazy[VARIABLES].sum("member").compute()


def measure(
    s: dict, repeats: int, long: float, threads: int, profile: Path | None, decode: str
) -> dict:
    """Time and peak memory of one point (run in its own process)."""
    import dask
    import torch

    import xlevda

    torch.set_num_threads(threads)
    model, target, obs, n_values = build(s)
    method, background = xlevda.LEVDA(window=WINDOW), None
    run = xlevda.RunOptions(members=s["members"], seed=0)
    if s.get("method", "LEVDA") == "4DEnVar":
        model, method, background = peer(model, s["members"])
        run = xlevda.RunOptions(members=s["members"], seed=0, dtype="float32")
    out = {"obs_values": n_values, "obs_per_window": n_values * WINDOW / s["frames"]}
    t_a, t_d, m_a, m_d = [], [], [], []
    if profile is not None:  # else the work runs in dask's worker threads, unseen by cProfile
        dask.config.set(scheduler="synchronous")
    for i in range(repeats):
        base = _reset_peak()
        prof = cProfile.Profile() if profile is not None and i == 0 else None
        if prof is not None:
            prof.enable()
        t0 = time.perf_counter()
        lazy = target.levda.assimilate(obs, model, method, run=run, background=background)
        t1 = time.perf_counter()
        m_a.append(_status("VmHWM") - base)
        if prof is not None:
            prof.disable()
        Path("/proc/self/clear_refs").write_text("5")
        t2 = time.perf_counter()
        fields = _decode(lazy, decode)
        t3 = time.perf_counter()
        m_d.append(_status("VmHWM") - base)
        if prof is not None:
            prof_d = cProfile.Profile()
            prof_d.enable()
            _decode(lazy, decode)
            prof_d.disable()
            for name, p in (("assimilate", prof), ("decode", prof_d)):
                path = profile.with_suffix(f".{name}.txt")
                with path.open("w") as f:
                    pstats.Stats(p, stream=f).sort_stats("cumulative").print_stats(25)
                with path.open("a") as f:
                    pstats.Stats(p, stream=f).sort_stats("tottime").print_stats(15)
        t_a.append(t1 - t0)
        t_d.append(t3 - t2)
        del lazy, fields
        if t3 - t0 > long:
            break
    out |= {
        "assimilate_s": statistics.median(t_a),
        "decode_s": statistics.median(t_d),
        "runs": len(t_a),
        "assimilate_mb": max(m_a) / 2**20,
        "decode_mb": max(m_d) / 2**20,
    }
    return out


def _child(args) -> None:
    s = json.loads(args.child)
    profile = Path(args.profile_out) if args.profile_out else None
    res = measure(s, args.repeats, args.long, args.threads, profile, args.decode)
    print("RESULT " + json.dumps(res))


def _watch(proc: subprocess.Popen, timeout: float, kill_bytes: float, t0: float) -> str:
    """Wait for ``proc``; kill it past ``timeout`` seconds or ``kill_bytes`` resident.
    Returns why it was killed, or ``""``."""
    while proc.poll() is None:
        try:
            text = Path(f"/proc/{proc.pid}/status").read_text()
            rss = int(next(x for x in text.splitlines() if x.startswith("VmRSS:")).split()[1])
        except (OSError, StopIteration):
            rss = 0
        elapsed = time.perf_counter() - t0
        why = ""
        if rss * 1024 > kill_bytes:
            why = f"killed at {rss * 1024 / 1e9:.1f} GB resident after {elapsed:.0f} s"
        elif elapsed > timeout:
            why = f"killed at the time limit of {timeout:.0f} s per point"
        if why:
            proc.kill()
            proc.wait()
            return why
        time.sleep(0.5)
    return ""


def run_point(axis: str, value, args) -> dict:
    s = point_setting(axis, value, args.method)
    row = {"axis": axis, "value": value, "setting": s, "decode": args.decode}
    est = estimated_bytes(s, args.decode)
    if est > args.max_gb * 1e9:
        return row | {"skipped": f"estimated peak {est / 1e9:.1f} GB > {args.max_gb} GB"}
    cmd = [sys.executable, __file__, "--child", json.dumps(s), "--repeats", str(args.repeats)]
    cmd += ["--decode", args.decode]
    t0 = time.perf_counter()
    cmd += ["--long", str(args.long), "--threads", str(args.threads)]
    if args.profile_out:
        cmd += ["--profile-out", args.profile_out]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        why = _watch(proc, args.timeout, args.kill_gb * 1e9, t0)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if why:
        return row | {"skipped": why}
    lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return row | {"skipped": f"failed (rc {proc.returncode}): {stderr[-300:]}"}
    res = json.loads(lines[-1][7:])
    res["load"] = os.getloadavg()[0]
    res["wall_point_s"] = time.perf_counter() - t0
    return row | res


def _label(axis: str, value) -> str:
    return f"{value[0]}x{value[1]}" if axis == "grid" else str(value)


def table(rows: list[dict]) -> str:
    head = (
        "| method | axis | value | K | obs. values / window | target (lat x lon) | frames | "
        "assimilate (s) | decode (s) | decode mode | runs | peak RSS increase, assimilate (MB) | "
        "..., decode (MB) | load avg |\n" + "|" + "---|" * 14
    )
    lines = [head]
    for r in rows:
        s = r["setting"]
        grid = f"{s['grid'][0]}x{s['grid'][1]}"
        first = f"| {s.get('method', 'LEVDA')} | {r['axis']} | {_label(r['axis'], r['value'])} | "
        first += f"{s['members']} | "
        if "skipped" in r:
            lines.append(
                first + f"- | {grid} | {s['frames']} | skipped: {r['skipped']} | | "
                f"{r['decode']} | | | | |"
            )
            continue
        lines.append(
            first + f"{r['obs_per_window']:.0f} | {grid} | {s['frames']} | "
            f"{r['assimilate_s']:.2f} | {r['decode_s']:.2f} | {r['decode']} | {r['runs']} | "
            f"{r['assimilate_mb']:.0f} | {r['decode_mb']:.0f} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def _panel(col, axis: str, rs: list[dict], mode: str, style: str, method: str, both: bool) -> None:
    """Times (top) and peak memory (bottom) of one axis, decode mode and method, log-log;
    ``both``: the axis has ``load`` rows too, which show the ``assimilate`` call."""
    from matplotlib.ticker import NullFormatter

    x = [
        r["setting"]["grid"][0] * r["setting"]["grid"][1]
        if axis == "grid"
        else r["obs_per_window"]
        if axis == "observations"
        else r["value"]
        for r in rs
    ]
    for key, marker, label in (("assimilate", "o", "assimilate"), ("decode", "s", "decode")):
        lab = label if key == "assimilate" or mode == "load" else f"{label} ({mode})"
        lab = lab if method == "LEVDA" else f"{method} {lab}"
        if key == "assimilate" and mode == "stream" and both:
            continue
        col[0].loglog(x, [r[f"{key}_s"] for r in rs], marker + style, label=lab)
        col[1].loglog(x, [max(r[f"{key}_mb"], 1) for r in rs], marker + style, label=lab)
    for ax in col:
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    col[0].set_ylabel("seconds")
    col[1].set_ylabel("peak RSS increase (MB)")
    col[1].set_xlabel(
        {
            "members": "members K",
            "observations": "observed values per window",
            "grid": "target cells",
            "frames": "frames",
        }[axis]
    )


def plot(rows: list[dict], path: Path) -> None:
    """One panel per axis: times (log-log) and peak memory."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [a for a in AXES if any(r["axis"] == a and "skipped" not in r for r in rows)]
    fig, grid = plt.subplots(2, len(axes), figsize=(3.4 * len(axes), 6), squeeze=False)
    for j, axis in enumerate(axes):
        for method in METHODS:
            ok = [r for r in rows if r["axis"] == axis and "skipped" not in r]
            ok = [r for r in ok if r["setting"].get("method", "LEVDA") == method]
            both = len({r["decode"] for r in ok}) > 1
            for mode, style in (("load", "-"), ("stream", ":")):
                rs = [r for r in ok if r["decode"] == mode]
                if rs:
                    peer = method != "LEVDA"
                    _panel(grid[:, j], axis, rs, mode, "--" if peer else style, method, both)
        grid[0, j].set_title(axis)
        grid[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _parse(axis: str, value: str):
    return tuple(map(int, value.split("x"))) if axis == "grid" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two points per axis, one run")
    parser.add_argument("--axes", nargs="+", default=list(AXES), choices=list(AXES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", choices=METHODS, default="LEVDA", help="LEVDA or the peer")
    parser.add_argument("--long", type=float, default=20.0, help="one run only above (s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--max-gb", type=float, default=6.0)
    parser.add_argument(
        "--decode",
        choices=["load", "stream"],
        default="load",
        help="load the fields, or stream them (sum over members, chunk by chunk)",
    )
    parser.add_argument("--values", nargs="+", default=None, help="points of the one axis")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="JSON rows to merge")
    parser.add_argument("--timeout", type=float, default=600.0, help="per point (s)")
    parser.add_argument("--kill-gb", type=float, default=7.0, help="kill a point above (GB)")
    parser.add_argument("--out", type=Path, default=None, help="markdown table")
    parser.add_argument("--json", type=Path, default=None, help="rows as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the curves")
    parser.add_argument("--profile", default=None, help="AXIS=VALUE: cProfile that point")
    parser.add_argument("--profile-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    if args.profile:
        axis, value = args.profile.split("=")
        value = _parse(axis, value)
        args.profile_out = args.profile_out or f"/tmp/scaling_profile_{axis}_{value}"
        args.repeats = 1
        print(json.dumps(run_point(axis, value, args)))
        print(f"profiles: {args.profile_out}.assimilate.txt, .decode.txt")
        return None
    if args.quick:
        args.repeats = 1
    points = dict(QUICK if args.quick else AXES)
    if args.values:
        (axis,) = args.axes
        points[axis] = [_parse(axis, v) for v in args.values]
    rows = []
    for path in args.merge or []:
        rows += json.loads(path.read_text())
    for axis in [] if args.merge else args.axes:
        for value in points[axis]:
            r = run_point(axis, value, args)
            rows.append(r)
            print(json.dumps(r), flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
    header = (
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python "
        f"benchmarks/speed/scaling.py {' '.join(sys.argv[1:])}`  \n"
        f"Machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores (shared), "
        f"{args.threads} torch thread(s); date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    text = header + "\n\n" + table(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    return None


if __name__ == "__main__":
    main()
