"""Cost of the forced shallow-water simulator (:mod:`xlevda.systems.sphere`).

Two figures, each the median of ``--repeats`` timings:

- CPU grid (64x128, T42, the default config): wall time of :func:`simulate` for
  ``--runs`` runs integrated together over one 8 h frame interval (63 steps of about
  457 s), per run; and the same scaled to the default 64 frames (21 days);
- paper grid (256x512, T170, 60 s steps): wall time of one IF-RK4 step for ``--paper-runs``
  runs, per step and per run, and the 30,240 steps of a 21-day trajectory scaled from it.

Torch runs on ``--threads`` threads (default 1).  Prints one JSON line with the command
and the figures.

Run from the repository root (needs torch-harmonics, the extra ``sphere``):
``OMP_NUM_THREADS=1 python benchmarks/speed/simulate_sphere.py [--repeats 3] [--runs 8]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from xlevda.systems.sphere import sample_forcing, simulate
from xlevda.systems.sphere_config import SphereConfig, paper_config
from xlevda.systems.sphere_dynamics import SphereOperators, step


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            names = [
                line.split(":", 1)[1].strip() for line in info if line.startswith("model name")
            ]
    except OSError:
        names = []
    return f"{names[0] if names else platform.processor()} ({len(names) or '?'} logical cores)"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_grid(runs: int, repeats: int, dtype: torch.dtype, device: str) -> dict[str, float]:
    """Seconds per run for one frame interval, and scaled to the default 64 frames."""
    full = SphereConfig()
    cfg = SphereConfig(n_frames=2)
    params = sample_forcing(runs, seed=0, config=cfg)
    seconds = _median_seconds(
        lambda: simulate(**params, config=cfg, dtype=dtype, device=device), repeats
    )
    per_run = seconds / runs
    return {
        "grid": f"{cfg.nlat}x{cfg.nlon} (T{cfg.truncation})",
        "runs_per_batch": runs,
        "steps_per_frame": cfg.substeps,
        "time_step_s": cfg.frame_interval / cfg.substeps,
        "seconds_per_run_per_frame": per_run,
        "seconds_per_run_21_days_scaled": per_run * (full.n_frames - 1),
    }


def paper_grid(runs: int, steps: int, repeats: int, dtype, device: str) -> dict[str, float]:
    """Seconds per IF-RK4 step at 256x512 (setup excluded), and scaled to 30,240 steps."""
    cfg = paper_config()
    op = SphereOperators(cfg, dtype, torch.device(device))
    state = op.initial_state().expand(runs, -1, -1, -1).clone()
    params = sample_forcing(runs, seed=0, config=cfg)
    kw = {"dtype": dtype, "device": device}
    amplitude = torch.as_tensor(params["h_f0"] / 3600, **kw)[:, None, None]
    width = torch.as_tensor(params["sigma"], **kw)[:, None, None]
    dt = cfg.max_time_step
    half, full = torch.exp(-0.5 * dt * op.damping), torch.exp(-dt * op.damping)

    def run() -> None:
        s = state
        for i in range(steps):
            s = step(s, i * dt, dt, half, full, op, amplitude, width)
        if device != "cpu":
            torch.cuda.synchronize()

    run()  # warm-up
    per_step = _median_seconds(run, repeats) / steps
    total_steps = cfg.substeps * (cfg.n_frames - 1)
    return {
        "grid": f"{cfg.nlat}x{cfg.nlon} (T{cfg.truncation})",
        "runs_per_batch": runs,
        "time_step_s": dt,
        "seconds_per_step": per_step,
        "seconds_per_step_per_run": per_step / runs,
        "steps_21_days": total_steps,
        "seconds_per_run_21_days_scaled": per_step / runs * total_steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=8, help="runs per batch at 64x128")
    parser.add_argument("--paper-runs", type=int, default=1, help="runs per batch at 256x512")
    parser.add_argument("--paper-steps", type=int, default=3, help="steps timed per repeat")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {_cpu_model()}",
        "device": args.device,
        "torch": torch.__version__,
        "threads": args.threads,
        "dtype": args.dtype,
        "repeats": args.repeats,
        "cpu_grid": cpu_grid(args.runs, args.repeats, dtype, args.device),
        "paper_grid": paper_grid(
            args.paper_runs, args.paper_steps, args.repeats, dtype, args.device
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
