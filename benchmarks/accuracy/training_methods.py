"""Training methods side by side: held-out full-trajectory error and fit time of ``LDNet.fit``.

Methods (each through ``xlevda.LDNet.fit``, on the same archive and the same held-out
runs, the fit's own validation split):

- ``linear``: the closed-form linear LDNet (``LinearDynamicsConfig``);
- ``bilinear``: ``xlevda.PolynomialDynamicsConfig(param_degree=D, quadratic_modes=0)``;
- ``quadratic``: ``xlevda.PolynomialDynamicsConfig(param_degree=0, quadratic_modes=Q)``;
- ``both``: ``xlevda.PolynomialDynamicsConfig(param_degree=D, quadratic_modes=Q)``;
- ``gradient``: the gradient-trained LDNet (``LDNetConfig(decoder=MLPDecoderConfig())``,
  the default before the closed-form polynomial LDNet) for ``--epochs`` epochs.

Archives (cached as NetCDF under ``--cache``): ``tracer`` (a puff advected and diffused
with a parametric wind, :func:`tracer_quality.tracer_archive`, 51 runs), ``tsunami`` (the
shipped surrogate's training configuration: 48x48, 51 frames), ``kolmogorov`` (64x64, 40
frames, Re ~ U(500, 1500), one initial condition: the paper's setting) and ``sphere``
(32x64, 32 frames), the last three with ``--runs`` runs.  Each method prints
``model.quality.summary()``; one JSON line per method is appended to ``--out``.

Run::

    python benchmarks/accuracy/training_methods.py --system tracer --latent-dim 81 \\
        --cosine-terms 20 --quadratic-modes 10 --epochs 5
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import xarray as xr
from tracer_quality import tracer_archive

import xlevda

PARAMS = {
    "tracer": ["wind_east", "wind_north", "diffusivity"],
    "tsunami": ["src_lat", "src_lon"],
    "kolmogorov": ["Re"],
    "sphere": ["h_f0", "sigma"],
}


def simulate(system: str, runs: int, seed: int) -> xr.Dataset:
    """``runs`` runs of ``system`` in its benchmark configuration."""
    from xlevda.systems import kolmogorov, sphere, sphere_config, tsunami

    if system == "tracer":
        return tracer_archive()
    if system == "tsunami":
        cfg = tsunami.TsunamiConfig(nx=48, ny=48)
        return tsunami.simulate(**tsunami.sample_sources(runs, seed=seed, config=cfg), config=cfg)
    if system == "kolmogorov":
        cfg = kolmogorov.KolmogorovConfig(nx=64, ny=64, n_frames=40)
        return kolmogorov.simulate(**kolmogorov.sample_reynolds(runs, seed=seed), config=cfg)
    cfg = sphere_config.SphereConfig(nlat=32, n_frames=32)
    return sphere.simulate(**sphere.sample_forcing(runs, seed=seed, config=cfg), config=cfg)


def archive(system: str, runs: int, seed: int, cache: Path) -> xr.Dataset:
    """The archive, simulated once and then read from ``cache``."""
    name = "tracer" if system == "tracer" else f"{system}_{runs}_{seed}"
    path = cache / f"{name}.nc"
    if not path.exists():
        t0 = time.perf_counter()
        ds = simulate(system, runs, seed)
        ds.to_netcdf(path)
        n = ds.sizes["run"]
        print(f"simulated {system} ({n} runs) in {time.perf_counter() - t0:.0f} s -> {path}")
    return xr.open_dataset(path).load()


def configs(args: argparse.Namespace) -> dict[str, xlevda.LDNetConfig]:
    """The config of every method of ``args.methods``."""
    train = xlevda.TrainConfig(epochs=args.epochs, validation_fraction=args.val_fraction)
    closed = {
        "latent_dim": args.latent_dim,
        "learnable_dt": False,
        "decoder": xlevda.CosineDecoderConfig(n_terms=args.cosine_terms),
        "train": train,
    }
    deg, q = args.param_degree, args.quadratic_modes
    dynamics = {
        "linear": xlevda.LinearDynamicsConfig(),
        "bilinear": xlevda.PolynomialDynamicsConfig(param_degree=deg),
        "quadratic": xlevda.PolynomialDynamicsConfig(param_degree=0, quadratic_modes=q),
        "both": xlevda.PolynomialDynamicsConfig(param_degree=deg, quadratic_modes=q),
    }
    out = {}
    for method in args.methods:
        if method == "gradient":
            out[method] = xlevda.LDNetConfig(decoder=xlevda.MLPDecoderConfig(), train=train)
        else:
            out[method] = xlevda.LDNetConfig(dynamics=dynamics[method], **closed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=sorted(PARAMS), default="tracer")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=["linear", "bilinear", "quadratic", "both", "gradient"],
        default=["linear", "bilinear", "quadratic", "both"],
    )
    parser.add_argument("--runs", type=int, default=200, help="simulated runs (not tracer)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the parameter draws")
    parser.add_argument("--latent-dim", type=int, default=81)
    parser.add_argument("--cosine-terms", type=int, default=20)
    parser.add_argument("--param-degree", type=int, default=2)
    parser.add_argument("--quadratic-modes", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the gradient method")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--cache", default="/tmp/training_cache")
    parser.add_argument("--out", default="/tmp/training_cache/training_methods.jsonl")
    args = parser.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = archive(args.system, args.runs, args.seed, cache)
    for method, config in configs(args).items():
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            model = xlevda.LDNet.fit(ds, PARAMS[args.system], config, progress=False)
        seconds = time.perf_counter() - t0
        q = model.quality
        print(f"\n== {args.system} / {method}: LDNet.fit {seconds:.1f} s")
        print(q.summary())
        for w in caught:
            if "spectral radius" in str(w.message):
                print(f"UserWarning: {w.message}")
        record = {
            "system": args.system,
            "method": method,
            "runs": int(ds.sizes["run"]),
            "fit_seconds": round(seconds, 1),
            "mean_errors": dict(zip(q.variables, q.mean_errors, strict=True)),
            "overall_errors": dict(zip(q.variables, q.overall_errors, strict=True)),
            "heldout_runs": list(q.heldout_runs),
            "spectral_radius": q.spectral_radius,
            "radius_of": q.radius_of,
            "fit": model.metadata.get(f"{getattr(config.dynamics, 'kind', '')}_fit"),
            "config": xlevda.surrogates.config.config_to_dict(config),
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
