"""The options of ``xlevda assimilate`` (:mod:`xlevda.cli`) and their conversion to Python's.

:func:`add_assimilate` builds the command's parser; :func:`obs_coords` and
:func:`write_options` turn its ``--obs-coords`` and output options into the keywords of
:func:`xlevda.assimilate` and :func:`xlevda.write`, checked before any work.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from xlevda.errors import CoordinateError
from xlevda.validate import check_real

__all__ = ["add_assimilate", "error_pair", "obs_coords", "write_options"]


def error_pair(text: str) -> tuple[str, float]:
    """``VAR=STD`` of ``--errors``.

    Examples
    --------
    >>> error_pair("eta=0.01")
    ('eta', 0.01)
    """
    name, sep, value = text.partition("=")
    try:
        std = float(value)
    except ValueError:
        std = None
    if not sep or not name or std is None:
        raise argparse.ArgumentTypeError(f"expected VAR=STD such as eta=0.01, got {text!r}")
    return name, std


def obs_coords(items: Sequence[str] | None) -> list[str] | dict[str, str] | None:
    """``--obs-coords`` as ``assimilate(obs_coords=)``: names in the surrogate's order, or
    ``SURROGATE=NAME`` pairs (some or all).

    Raises
    ------
    CoordinateError
        Names and pairs mixed, or a pair with an empty side.

    Examples
    --------
    >>> obs_coords(["yy", "xx"]), obs_coords(["lat=yy"]), obs_coords(None)
    (['yy', 'xx'], {'lat': 'yy'}, None)
    """
    if items is None:
        return None
    pairs = [item.partition("=") for item in items]
    if not any(sep for _, sep, _ in pairs):
        return list(items)
    if not all(sep and name and value for name, sep, value in pairs):
        raise CoordinateError(
            f"--obs-coords {' '.join(items)}: expected the observations' coordinate names in "
            "the surrogate's order (e.g. --obs-coords yy xx) or SURROGATE=NAME pairs "
            "(e.g. --obs-coords lat=yy lon=xx), not both"
        )
    return {name: value for name, _, value in pairs}


def write_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :func:`xlevda.write` that ``--spread-step`` and ``--no-latent`` set.

    Examples
    --------
    >>> write_options(argparse.Namespace(spread_step=0.1, no_latent=False))
    {'latent': True, 'spread_step': 0.1}
    """
    if args.spread_step is not None:
        check_real("--spread-step", args.spread_step, 0.0, 1.0, low_open=True)
    return {"latent": not args.no_latent, "spread_step": args.spread_step}


def _add_observation_options(asm: argparse.ArgumentParser) -> None:
    """The options on what is assimilated: variables, errors, positions, outside, QC."""
    asm.add_argument(
        "--variables",
        nargs="+",
        default=None,
        help="observed variables to assimilate (default: all in the observations)",
    )
    asm.add_argument(
        "--errors",
        nargs="+",
        type=error_pair,
        default=None,
        metavar="VAR=STD",
        help="observation error standard deviation of variables without <var>_std, e.g. eta=0.01",
    )
    asm.add_argument(
        "--obs-coords",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the observations' position coordinates: one name per spatial coordinate of the "
        "surrogate in its order (e.g. yy xx), or SURROGATE=NAME pairs (e.g. lat=yy); default: "
        "found by name, CF identity (standard name, units, axis), then common names",
    )
    asm.add_argument(
        "--outside",
        choices=["error", "drop"],
        default="error",
        help="observations outside the surrogate's domain or period: an error (default) or "
        "dropped and counted (n_observations_dropped)",
    )
    asm.add_argument(
        "--gross-error",
        type=float,
        default=None,
        metavar="THRESHOLD",
        help="reject, before each window's analysis, observations whose |O - B| exceeds "
        "THRESHOLD x sqrt(background spread^2 + error^2) (GrossErrorCheck; flagged in the "
        "output, counted in n_observations_rejected); default: use every observation",
    )


def _add_output_options(asm: argparse.ArgumentParser) -> None:
    """The options on what is written: path, precision, latent trajectory, progress."""
    asm.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    asm.add_argument(
        "-o",
        "--output",
        required=True,
        help="output path: .zarr a zarr store, .nc a NetCDF file (written under a temporary "
        "name, renamed when complete)",
    )
    asm.add_argument(
        "--spread-step",
        type=float,
        default=None,
        metavar="FRACTION",
        help="store each field as multiples of FRACTION (in (0, 1]) x its RMS ensemble spread, "
        "CF packed integers (xlevda.write's spread_step): values within half a step, e.g. "
        "0.1; default: lossless",
    )
    asm.add_argument(
        "--no-latent", action="store_true", help="leave the latent trajectory out of the output"
    )


def add_assimilate(sub, func: Callable[[argparse.Namespace], int]) -> None:
    """Add the ``assimilate`` command, run by ``func``, to ``sub`` (what ``add_subparsers``
    returns).

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_assimilate(parser.add_subparsers(), lambda args: 0)
    >>> line = "assimilate obs.nc --pretrained tsunami -o a.nc --obs-coords y x"
    >>> args = parser.parse_args(line.split())
    >>> args.obs_coords, args.spread_step, args.no_latent
    (['y', 'x'], None, False)
    """
    asm = sub.add_parser(
        "assimilate",
        help="assimilate observations into a surrogate and write the analysis ensemble",
        description="Run LEVDA: observations (one 'obs' dimension with time/lat/lon "
        "coordinates and <var>_std errors or --errors, or a gridded file with NaN where "
        "unobserved) are assimilated into a trained surrogate; the analysis ensemble is "
        "written to NetCDF or zarr (by the extension of --output).",
    )
    asm.add_argument("obs", help="observations (.nc or .zarr)")
    src = asm.add_mutually_exclusive_group(required=True)
    src.add_argument("--surrogate", help="a surrogate file saved by 'xlevda train'")
    src.add_argument("--pretrained", help="a shipped surrogate, e.g. tsunami")
    asm.add_argument(
        "--target",
        default=None,
        help="dataset whose time and space coordinates the analysis is wanted on "
        "(default: the surrogate's grid at its frames from the last at or before the first "
        "observation to the first at or after the last)",
    )
    asm.add_argument("--members", type=int, default=100, help="ensemble size K (default 100)")
    asm.add_argument(
        "--window", type=int, default=5, help="observation times per window, tau (default 5)"
    )
    asm.add_argument("--seed", type=int, default=0, help="seed of the prior draws")
    asm.add_argument(
        "--past-horizon",
        choices=["error", "forecast"],
        default="error",
        help="target times past the surrogate's last training frame: an error (default) or "
        "forecasts, warned about and counted (n_target_times_past_horizon)",
    )
    _add_observation_options(asm)
    _add_output_options(asm)
    asm.set_defaults(func=func)
