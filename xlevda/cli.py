"""The ``xlevda`` command line: simulate, train, assimilate, demo.

Training defaults are those of :class:`~xlevda.LDNetConfig` and
:class:`~xlevda.TrainConfig` (read from them, as ``LDNet.fit`` uses them); outputs are
written by :func:`xlevda.write.write` (format by extension, all or nothing); progress
bars show on a terminal unless ``--quiet``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from xlevda._assimilate_args import add_assimilate, obs_coords, write_options
from xlevda._train_args import add_train_options, train_config
from xlevda._version import VERSION

__all__ = ["build_parser", "default_target", "main", "train_config"]

_EPILOG = """\
typical session:
  xlevda simulate tsunami --runs 200 --grid 48 -o runs.zarr
  xlevda train runs.zarr --params src_lat src_lon -o tsunami.pt
  xlevda assimilate buoys.nc --surrogate tsunami.pt -o analysis.nc
  xlevda demo
"""


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal, unless ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def _system_runs(args: argparse.Namespace):
    """The configuration and the parameter draws of ``xlevda simulate SYSTEM``."""
    from xlevda.systems import kolmogorov, tsunami

    frames = {} if args.frames is None else {"n_frames": args.frames}
    if args.system == "kolmogorov":
        cfg = (
            kolmogorov.paper_config()
            if args.paper
            else kolmogorov.KolmogorovConfig(nx=args.grid, ny=args.grid, **frames)
        )
        return kolmogorov, cfg, kolmogorov.sample_reynolds(args.runs, seed=args.seed)
    cfg = (
        tsunami.paper_config()
        if args.paper
        else tsunami.TsunamiConfig(nx=args.grid, ny=args.grid, **frames)
    )
    return tsunami, cfg, tsunami.sample_sources(args.runs, seed=args.seed, config=cfg)


def _simulate(args: argparse.Namespace) -> int:
    from xlevda.write import write

    system, cfg, params = _system_runs(args)
    t0 = time.perf_counter()
    ds = system.simulate(**params, config=cfg, progress=_show_progress(args))
    elapsed = time.perf_counter() - t0
    out = write(ds.chunk({"run": min(args.runs, 16)}), args.output)
    print(
        f"simulated {args.runs} {args.system} run(s) on {cfg.ny}x{cfg.nx}, {cfg.n_frames} frames "
        f"in {elapsed:.1f} s -> {out}"
    )
    return 0


def _open(path: str):
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise SystemExit(f"xlevda: error: {path!r} does not exist")
    return xr.open_zarr(p) if p.suffix == ".zarr" or p.is_dir() else xr.open_dataset(p)


def _train(args: argparse.Namespace) -> int:
    from xlevda.ldnet import LDNet

    ds = _open(args.data)
    cfg = train_config(args)
    t0 = time.perf_counter()
    model = LDNet.fit(
        ds,
        params=args.params,
        config=cfg,
        variables=args.variables,
        progress=_show_progress(args),
        coords=args.coords,
    )
    elapsed = time.perf_counter() - t0
    if args.decoder in ("linear", "polynomial"):
        half = ("decoder.weight", "dynamics.A") if args.decoder == "linear" else ("decoder.weight",)
        model.save(args.output, half=half)
        print(f"fitted in {elapsed:.1f} s -> {args.output}")
    else:
        model.save(args.output)
        print(f"trained in {elapsed:.1f} s -> {args.output}")
    print(model.quality.summary())
    return 0


def default_target(model, obs):
    """The surrogate's grid at its frames from the last at or before the first observation to
    the first at or after the last one (so the analysis covers every observation); frames
    continue at the training frames' interval past the last one where observations do (the
    assimilation then refuses them unless ``--past-horizon forecast``)."""
    import numpy as np
    import xarray as xr

    from xlevda._convert import find_time, grid_coords

    s = model.schema
    frames = model.frame_times()
    t_obs = np.asarray(obs[find_time(obs)].values).ravel()
    if len(frames) > 1 and t_obs.max() > frames[-1]:
        interval = frames[-1] - frames[-2]
        extra = int(np.ceil((t_obs.max() - frames[-1]) / interval))
        frames = np.concatenate([frames, frames[-1] + interval * np.arange(1, extra + 1)])
    before = frames[frames <= t_obs.min()]
    after = frames[frames >= t_obs.max()]
    start = before[-1] if before.size else frames[0]
    end = after[0] if after.size else frames[-1]
    coords = grid_coords(s)
    times = frames[(frames >= start) & (frames <= end)]
    return xr.Dataset(coords={"time": ("time", times, {"standard_name": "time"}), **coords})


def _assimilate(args: argparse.Namespace) -> int:
    from xlevda import load_pretrained, load_surrogate
    from xlevda.methods import LEVDA
    from xlevda.progress import progress
    from xlevda.quality_control import GrossErrorCheck
    from xlevda.run import RunOptions
    from xlevda.write import output_format, write

    output_format(args.output)  # an unknown extension or option fails before the work
    options, coords = write_options(args), obs_coords(args.obs_coords)
    model = load_pretrained(args.pretrained) if args.pretrained else load_surrogate(args.surrogate)
    obs = _open(args.obs)
    target = _open(args.target) if args.target else default_target(model, obs)
    run = RunOptions(
        members=args.members,
        seed=args.seed,
        outside=args.outside,
        past_horizon=args.past_horizon,
        quality_control=None if args.gross_error is None else GrossErrorCheck(args.gross_error),
        progress=False,  # the bar of the block below covers the windows and the writing
    )
    t0 = time.perf_counter()
    with progress(_show_progress(args), desc="assimilate"):
        analysis = target.levda.assimilate(
            obs,
            model,
            LEVDA(window=args.window),
            run=run,
            variables=args.variables,
            errors=dict(args.errors) if args.errors else None,
            obs_coords=coords,
        )
        write(analysis, args.output, **options)
    print(
        f"assimilated {analysis.attrs['n_observations_used']} observations in "
        f"{analysis.sizes['window']} windows, K={args.members}, in "
        f"{time.perf_counter() - t0:.1f} s -> {args.output}"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from xlevda.demo import run_demo

    output = args.output or (
        "levda_demo.nc" if args.system == "tsunami" else f"levda_demo_{args.system}.nc"
    )
    return run_demo(seed=args.seed, output=output, plot=not args.no_plot, system=args.system)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``xlevda`` command."""
    parser = argparse.ArgumentParser(
        prog="xlevda",
        description="Latent ensemble variational data assimilation on xarray data.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the surrogates are small, and one thread is "
        "fastest on small shared CPUs; raise it on a large idle machine)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_simulate(sub)
    _add_train(sub)
    add_assimilate(sub, _assimilate)
    _add_demo(sub)
    return parser


def _add_simulate(sub) -> None:
    """Add the ``simulate`` command to ``sub``, the action ``add_subparsers`` returns."""
    sim = sub.add_parser(
        "simulate",
        help="simulate a benchmark system and write its runs to zarr or NetCDF",
        description="Simulate runs of a benchmark system with random unknown parameters "
        "(tsunami: the source position; kolmogorov: the Reynolds number) and write a "
        "CF-labelled dataset.",
    )
    sim.add_argument("system", choices=["tsunami", "kolmogorov"], help="which system to simulate")
    sim.add_argument("--runs", type=int, default=200, help="number of runs (default 200)")
    sim.add_argument("--grid", type=int, default=48, help="grid points per side (default 48)")
    sim.add_argument(
        "--frames",
        type=int,
        default=None,
        help="output frames per run (default: the system's, 51 tsunami, 40 kolmogorov)",
    )
    sim.add_argument("--paper", action="store_true", help="the paper's 150x150 grid and frames")
    sim.add_argument("--seed", type=int, default=0, help="seed of the parameter draws")
    sim.add_argument("-o", "--output", required=True, help="output path (.zarr or .nc)")
    sim.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(func=_simulate)


def _add_train(sub) -> None:
    """Add the ``train`` command to ``sub``, the action ``add_subparsers`` returns."""
    tr = sub.add_parser(
        "train",
        help="train an LDNet surrogate on simulated runs",
        description="Train a Latent Dynamics Network on a dataset with dims (run, time, "
        "space...) and parameters as coordinates on 'run'; save it to one file.",
    )
    tr.add_argument("data", help="training runs (.zarr store or NetCDF file)")
    tr.add_argument(
        "--params",
        nargs="+",
        required=True,
        help="parameter coordinates on 'run', e.g. src_lat src_lon",
    )
    tr.add_argument(
        "--variables",
        nargs="+",
        default=None,
        help="fields to learn (default: all with dims run, time, space)",
    )
    tr.add_argument(
        "--coords",
        nargs="+",
        default=None,
        help="spatial coordinates in decoder order, e.g. y x or 2-D lat lon (default: detected)",
    )
    add_train_options(tr)
    tr.add_argument("--seed", type=int, default=0, help="seed of weights and sampling")
    tr.add_argument("-o", "--output", required=True, help="output file, e.g. model.pt")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=_train)


def _add_demo(sub) -> None:
    """Add the ``demo`` command to ``sub``, the action ``add_subparsers`` returns."""
    demo = sub.add_parser(
        "demo",
        help="the main job: a twin experiment with a shipped surrogate (tsunami by default)",
        description="Simulate a hidden truth (tsunami source, Kolmogorov Reynolds number or "
        "sphere forcing), observe it with a sensor grid and reconstruct it and its "
        "parameters with LEVDA on the shipped surrogate; prints a table and writes a PNG.",
    )
    demo.add_argument(
        "system",
        nargs="?",
        default="tsunami",
        choices=["tsunami", "kolmogorov", "sphere"],
        help="which twin experiment (default tsunami)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the hidden truth and noise")
    demo.add_argument(
        "-o",
        "--output",
        default=None,
        help="output NetCDF path (default levda_demo.nc, levda_demo_<system>.nc for others)",
    )
    demo.add_argument("--no-plot", action="store_true", help="skip the PNG")
    demo.set_defaults(func=_demo)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xlevda`` command."""
    import torch

    from xlevda.errors import XlevdaError

    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"xlevda: error: --threads {args.threads}: expected >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except XlevdaError as err:
        print(f"xlevda: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
