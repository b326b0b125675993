"""The assimilation methods side by side on the tsunami twin experiment (issue 5.4).

On the 48x48 CPU tsunami twin (10 % observation noise, u, v and eta observed at a
regular buoy network at every frame) run, on the same truths and observations:

- LEVDA (latent 4DEnVar through the shipped surrogate, K = 100, tau = 5),
- LD-EnSF (latent ensemble score filter with an LSTM observation encoder trained
  here on simulated runs observed at the network; its training is timed apart),
- LETKF, EnSF and 4DEnVar on the full simulator state (K = 40), through the same
  accessor (``xlevda.LETKF``, ``EnSF``, ``FourDEnVar``) with the simulator as the model
  (:class:`xlevda.systems.tsunami_model.TsunamiModel`: its C-grid prognostic
  variables are the state, u, v at the cell centres and eta are observed).
  4DEnVar uses r = 2 grid cells of localization and multiplicative inflation;
  LETKF the same localization and inflation.
- the prior full-state ensemble run without assimilation, as a reference.

Every method estimates ``(src_lat, src_lon)``: LEVDA and LD-EnSF with the latent
state, the full-state methods by state augmentation (the source sets only the
initial condition, so they learn it from its correlation with the state).

Then LEVDA and 4DEnVar are compared over observation strides (Figure 4c of the
paper).  Everything (NetCDF of all scores, PNG figures, a markdown table, and
``docs/compare.md``) is rewritten by one command::

    OMP_NUM_THREADS=1 python benchmarks/accuracy/compare.py           # about 25 minutes, 2-core CPU
    OMP_NUM_THREADS=1 python benchmarks/accuracy/compare.py --quick   # a few minutes

Runtimes are wall-clock seconds on one torch thread, medians over repeats, all
methods measured in the same process one after another.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from compare_report import plot, sweep_table, table, targets, write_markdown
from compare_settings import FLOOR, LEVDA_EQUAL_K, METHODS, PRIOR, Settings
from torch import Tensor

from xlevda import LETKF, LEVDA, EnSF, FourDEnVar, RunOptions, load_pretrained, metrics
from xlevda.core.dynamics import trajectory
from xlevda.core.ldensf import LDEnSFConfig, ldensf_filter
from xlevda.errors import ConfigError, XlevdaError
from xlevda.io import surrogate_checksum
from xlevda.methods import EnSFConfig, Inflation, Localization
from xlevda.surrogates.encoder import EncoderConfig
from xlevda.surrogates.encoder_training import fit_encoder
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.systems import observe, tsunami
from xlevda.systems.tsunami_model import TsunamiModel

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = ("u", "v", "eta")


@dataclass(frozen=True)
class Network:
    """Observations of one case at a grid-stride network, as tensors.

    Attributes
    ----------
    rows, cols : Tensor, shape (P,), int64
        Observed cells.
    values : Tensor, shape (T, P, C)
        Observed u, v, eta at every frame.
    std : Tensor, shape (C,)
        Observation error standard deviation per variable.
    """

    rows: Tensor
    cols: Tensor
    values: Tensor
    std: Tensor

    @classmethod
    def of(cls, obs: xr.Dataset, truth: xr.Dataset, dtype: torch.dtype) -> Network:
        n_t = truth.sizes["time"]
        rows = np.searchsorted(truth.lat.values, obs.lat.values[: obs.sizes["obs"] // n_t])
        cols = np.searchsorted(truth.lon.values, obs.lon.values[: obs.sizes["obs"] // n_t])
        values = np.stack([obs[v].values.reshape(n_t, -1) for v in VARIABLES], -1)
        std = [float(obs[f"{v}_std"][0]) for v in VARIABLES]
        as_t = torch.as_tensor
        return cls(as_t(rows), as_t(cols), as_t(values, dtype=dtype), as_t(std, dtype=dtype))

    def at(self, fields: Tensor) -> Tensor:
        """Centred fields (..., C, ny, nx) at the network: (..., P, C)."""
        return fields[..., self.rows, self.cols].transpose(-1, -2)


# ----------------------------------------------------------------------------- methods


def run_full_state(
    target: xr.Dataset,
    obs: xr.Dataset,
    model: TsunamiModel,
    method: LETKF | EnSF | FourDEnVar,
    initial: dict[str, np.ndarray],
    s: Settings,
    seed: int,
) -> xr.Dataset:
    """A full-state method through the accessor, fields computed: (time, member, lat, lon)."""
    run = RunOptions(members=s.full_members, seed=seed, dtype="float32")
    an = target.levda.assimilate(obs, model, method, run=run, background=initial)
    return an[[*VARIABLES, *model.schema.params]].transpose("time", "member", ...).load()


def full_state_methods(model: TsunamiModel, s: Settings) -> dict[str, object]:
    """LETKF, EnSF and 4DEnVar as configured for this benchmark (radius in km)."""
    radius_km = s.radius * model.config.dx / 1e3
    return {
        "LETKF": LETKF(inflation=Inflation(s.inflation), localization=Localization(radius_km)),
        "EnSF": EnSF(EnSFConfig(steps=s.ensf_steps)),
        "4DEnVar": FourDEnVar(
            inflation=Inflation(multiplicative=s.inflation),
            localization=Localization(radius_km),
            window=s.window,
        ),
    }


def prior_run(model: TsunamiModel, initial: dict[str, np.ndarray], truth: xr.Dataset):
    """The prior ensemble run through the simulator without observations."""
    norm = model.schema.param_norm
    u = torch.as_tensor(norm.normalize(np.stack([initial[p] for p in model.schema.params], -1)))
    z = trajectory(model, torch.cat([model.initial_state(u), u], -1), truth.sizes["time"] - 1)
    fields = model.state_to_fields(z[..., : model.latent_dim]).transpose(0, 1).numpy()
    dims = ("time", "member", "lat", "lon")
    data = {v: (dims, fields[:, :, c]) for c, v in enumerate(model.schema.variables)}
    for p in model.schema.params:
        data[p] = (("time", "member"), np.broadcast_to(initial[p], fields.shape[:2]))
    return xr.Dataset(data, coords={"time": truth.time, "lat": truth.lat, "lon": truth.lon})


def run_levda(
    target: xr.Dataset, obs: xr.Dataset, surrogate, members: int, s: Settings, seed: int
) -> xr.Dataset:
    """LEVDA through the accessor, fields computed: (time, member, lat, lon) + parameters."""
    run = RunOptions(members=members, seed=seed)
    an = target.levda.assimilate(obs, surrogate, LEVDA(window=s.window), run=run)
    return an[[*VARIABLES, *surrogate.schema.params]].transpose("time", "member", ...).load()


def grid_points(surrogate, lat: np.ndarray, lon: np.ndarray) -> Tensor:
    """Normalized decoder inputs of the cells ``(lat[i], lon[i])``: (P, 2)."""
    pts, inside = surrogate.schema.embed(np.stack([lat, lon], -1))
    if not inside.all():
        raise ConfigError("some grid cells lie outside the surrogate's training domain")
    return torch.as_tensor(pts, dtype=torch.as_tensor(surrogate.dt).dtype)


def train_encoder(surrogate, truth: xr.Dataset, s: Settings):
    """LD-EnSF encoder trained on simulated runs observed at the main network (no noise added
    here: :func:`fit_encoder` adds fresh noise of ``s.noise`` every epoch)."""
    grid = surrogate.schema.grid
    cfg = tsunami.TsunamiConfig(
        nx=len(grid["lon"]), ny=len(grid["lat"]), n_frames=surrogate.schema.n_frames
    )
    src = tsunami.sample_sources(s.train_runs, seed=10_000, config=cfg)
    idx = observe.GridStride(s.stride).indices
    rows, cols = idx(cfg.ny, "latitude"), idx(cfg.nx, "longitude")
    runs = tsunami.simulate(**src, config=cfg).isel(lat=rows, lon=cols)
    norm = surrogate.schema.output_norm
    y = np.stack(
        [(runs[v].values - norm.offset[c]) / norm.scale[c] for c, v in enumerate(VARIABLES)], -1
    )
    like = torch.as_tensor(surrogate.dt)
    hist = torch.as_tensor(y.reshape(s.train_runs, cfg.n_frames, -1), dtype=like.dtype)  # p * C + c
    pnorm = surrogate.schema.param_norm
    u = np.stack(
        [
            (src[p] - pnorm.offset[i]) / pnorm.scale[i]
            for i, p in enumerate(surrogate.schema.params)
        ],
        -1,
    )
    lat, lon = np.meshgrid(truth.lat.values[rows], truth.lon.values[cols], indexing="ij")
    net = ObservationNetwork(
        points=grid_points(surrogate, lat.ravel(), lon.ravel()), channels=(0, 1, 2)
    )
    enc_cfg = EncoderConfig(epochs=s.encoder_epochs, noise_ratio=s.noise)
    t0 = time.perf_counter()
    encoder = fit_encoder(surrogate, net, hist, torch.as_tensor(u, dtype=like.dtype), enc_cfg)
    return encoder, net, time.perf_counter() - t0


def run_ldensf(
    surrogate,
    encoder,
    net: ObservationNetwork,
    obs: Network,
    truth: xr.Dataset,
    s: Settings,
    seed: int,
) -> xr.Dataset:
    """LD-EnSF filter and decoding of every frame onto the grid: (time, member, lat, lon)."""
    norm, pnorm = surrogate.schema.output_norm, surrogate.schema.param_norm
    offset, scale = (torch.as_tensor(a, dtype=obs.values.dtype) for a in (norm.offset, norm.scale))
    y = ((obs.values - offset) / scale).flatten(-2)  # (T, P * C), p * C + c
    cfg = LDEnSFConfig(members=s.latent_members, ensf=EnSFConfig(steps=s.ensf_steps), seed=seed)
    res = ldensf_filter(surrogate, encoder, net, y, cfg, n_frames=truth.sizes["time"])
    lat, lon = np.meshgrid(truth.lat.values, truth.lon.values, indexing="ij")
    pts = grid_points(surrogate, lat.ravel(), lon.ravel())
    with torch.no_grad():
        fields = torch.stack([surrogate.decode(s_t, pts) for s_t in res.s])  # (T, K, P, C)
    fields = (fields * scale + offset).reshape(*fields.shape[:2], *lat.shape, len(VARIABLES))
    dims = ("time", "member", "lat", "lon")
    data = {v: (dims, fields[..., c].numpy()) for c, v in enumerate(VARIABLES)}
    u = res.u.numpy()
    for i, p in enumerate(surrogate.schema.params):
        data[p] = (("time", "member"), u[..., i] * pnorm.scale[i] + pnorm.offset[i])
    coords = {
        "time": truth.time,
        "member": np.arange(s.latent_members),
        "lat": truth.lat,
        "lon": truth.lon,
    }
    return xr.Dataset(data, coords=coords)


# ----------------------------------------------------------------------------- scores


def _stacked(ds: xr.Dataset, truth: xr.Dataset) -> xr.DataArray:
    """u, v, eta as one state, each divided by its truth standard deviation."""
    return xr.concat([ds[v] / float(truth[v].std()) for v in VARIABLES], dim="variable")


def surrogate_floor(surrogate, truth: xr.Dataset, true_src: dict[str, float]) -> xr.Dataset:
    """Relative RMSE of the surrogate run at the true source: the error floor of the latent
    methods (what a perfect estimate of the latent initial state and parameters would give)."""
    params = {p: xr.DataArray([v], dims="member") for p, v in true_src.items()}
    fc = surrogate.predict(params, times=truth.time.values, where=truth)
    fc = fc[list(VARIABLES)].reset_coords(drop=True)
    rel = metrics.relative_rmse(
        _stacked(fc, truth), _stacked(truth, truth), dim=["variable", "lat", "lon"]
    )
    return xr.Dataset({"rrmse": rel}).compute().reset_coords(drop=True)


def scores(
    ens: xr.Dataset, truth: xr.Dataset, true_src: dict[str, float], prior: dict
) -> xr.Dataset:
    """Per-frame relative RMSE of (u, v, eta) each scaled by its truth std, spread-error ratio,
    member-wise relative error (mean and std over members), CRPS of eta, parameter error
    (fraction of the prior range; NaN for methods without parameters)."""
    state, true_state = _stacked(ens, truth), _stacked(truth, truth)
    dims = ["variable", "lat", "lon"]
    member_err = metrics.member_relative_error(state, true_state, dim=dims)
    out = {
        "rrmse": metrics.relative_rmse(state, true_state, dim=dims),
        "ser": metrics.spread_error_ratio(state, true_state, dim=dims),
        "crps_eta": metrics.crps(ens[["eta"]], truth[["eta"]]).eta,
        "member_err_mean": member_err.mean("member"),
        "member_err_std": member_err.std("member"),
    }
    if all(p in ens for p in true_src):
        err = metrics.parameter_rmse(ens[list(true_src)], true_src, prior_range=prior)
        out["param_err"] = err.to_array().mean("variable")
    else:
        out["param_err"] = xr.full_like(out["rrmse"], np.nan)
    return xr.Dataset(out).compute().reset_coords(drop=True)


# ----------------------------------------------------------------------------- experiment


def _timed(fn: Callable[[], object], repeats: int) -> tuple[object, list[float]]:
    """First result of ``fn`` and the wall times of ``repeats`` calls."""
    result, times = None, []
    for r in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        result = out if r == 0 else result
    return result, times


def run_case(
    seed: int, surrogate, encoder, net, s: Settings, repeats: int
) -> tuple[dict, dict, dict, list[str]]:
    """All methods on one truth; returns scores, wall times, the sweep scores by stride and
    the failures (a method that raises is reported and left out, the others go on)."""
    grid = surrogate.schema.grid
    cfg = tsunami.TsunamiConfig(
        nx=len(grid["lon"]), ny=len(grid["lat"]), n_frames=surrogate.schema.n_frames
    )
    src = tsunami.sample_sources(1, seed=seed, config=cfg)
    true_src = {k: float(v[0]) for k, v in src.items()}
    truth = tsunami.simulate(**src, config=cfg).isel(run=0)[list(VARIABLES)]
    truth = truth.drop_vars(["run", "src_lat", "src_lon", "src_x", "src_y"])  # truth is hidden
    prior = dict(zip(surrogate.schema.params, surrogate.schema.param_range, strict=True))
    target = truth.drop_vars(list(truth.data_vars))
    model = TsunamiModel(cfg, dtype=torch.float32)  # as LEVDA's default
    initial = tsunami.sample_sources(s.full_members, seed=seed + 5_000, config=cfg)
    full = full_state_methods(model, s)
    score, times, sweep, failures = {FLOOR: surrogate_floor(surrogate, truth, true_src)}, {}, {}, []
    for stride in s.strides:
        obs = observe.observe(truth, observe.GridStride(stride), noise_ratio=s.noise, seed=seed + 1)
        tnet = Network.of(obs, truth, torch.float32)
        main = stride == s.stride
        reps = repeats if main else 1

        def full_state(name: str, obs=obs) -> Callable[[], xr.Dataset]:
            return lambda: run_full_state(target, obs, model, full[name], initial, s, seed)

        runs: dict[str, Callable[[], xr.Dataset]] = {
            "LEVDA": lambda obs=obs: run_levda(target, obs, surrogate, s.latent_members, s, seed),
            "4DEnVar": full_state("4DEnVar"),
        }
        if main:
            runs |= {
                "LD-EnSF": lambda tnet=tnet: run_ldensf(
                    surrogate, encoder, net, tnet, truth, s, seed
                ),
                "LETKF": full_state("LETKF"),
                "EnSF": full_state("EnSF"),
                PRIOR: lambda: prior_run(model, initial, truth),
                LEVDA_EQUAL_K: lambda obs=obs: run_levda(
                    target, obs, surrogate, s.full_members, s, seed
                ),
            }
        for name, fn in runs.items():
            try:
                ens, wall = _timed(fn, reps)
            except (XlevdaError, RuntimeError) as err:
                failures.append(
                    f"case {seed}, stride {stride}, {name}: {type(err).__name__}: {err}"
                )
                print(f"  FAILED {failures[-1][:160]}")
                continue
            sc = scores(ens, truth, true_src, prior)
            sweep[(stride, name)] = sc.rrmse
            if main:
                score[name], times[name] = sc, wall
            print(
                f"  case {seed} stride {stride:>2} {name:<14} rRMSE {float(sc.rrmse.mean()):.3f} "
                f"SER {float(sc.ser.mean()):.2f}  {np.median(wall):7.2f} s"
            )
    return score, times, sweep, failures


def collect(
    results: list[tuple[dict, dict, dict, list]],
    s: Settings,
    encoder_seconds: float,
    n_obs_main: int,
    ny: int,
) -> xr.Dataset:
    """One Dataset of every score: (method, case, time), runtimes (method), sweep (stride, ...)."""
    methods = [m for m in METHODS if any(m in r[0] for r in results)]
    time_coord = next(iter(results[0][0].values())).time

    def over(metric: str) -> xr.DataArray:
        def one(r, m):
            if m in r[0] and metric in r[0][m]:
                return r[0][m][metric]
            return xr.full_like(r[0][FLOOR].rrmse, np.nan)

        rows = [xr.concat([one(r, m) for r in results], "case") for m in methods]
        return xr.concat(rows, "method")

    ds = xr.Dataset(
        {
            k: over(k)
            for k in ("rrmse", "ser", "crps_eta", "param_err", "member_err_mean", "member_err_std")
        }
    )
    walls = [[t for r in results for t in r[1].get(m, [])] for m in methods]
    ds["runtime"] = ("method", [np.median(w) if w else np.nan for w in walls])
    ds["runtime_min"] = ("method", [np.min(w) if w else np.nan for w in walls])
    ds["runtime_count"] = ("method", [len(w) for w in walls])
    sweep_methods = ["LEVDA", "4DEnVar"]
    sweep = np.full((len(s.strides), 2, len(results), len(time_coord)), np.nan)
    for i, st in enumerate(s.strides):
        for j, m in enumerate(sweep_methods):
            for c, r in enumerate(results):
                if (st, m) in r[2]:
                    sweep[i, j, c] = r[2][(st, m)].values
    ds["sweep_rrmse"] = (("stride", "sweep_method", "case", "time"), sweep)
    ds = ds.assign_coords(
        method=methods,
        case=list(s.seeds),
        stride=list(s.strides),
        sweep_method=sweep_methods,
        time=time_coord.values,
    )
    ds["coverage"] = ("stride", [100 * (-(-ny // st)) ** 2 / ny**2 for st in s.strides])
    ds["coverage"].attrs["units"] = "percent of grid cells"
    ds["encoder_training_seconds"] = encoder_seconds
    ds.attrs["failures"] = json.dumps([f for r in results for f in r[3]])
    ds.attrs.update(
        {
            "settings": json.dumps(dataclasses.asdict(s)),
            "n_observations_main": n_obs_main,
            "torch_threads": torch.get_num_threads(),
            "machine": (
                f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores shared with "
                f"other jobs (load average {os.getloadavg()[0]:.1f} when the scores were collected)"
            ),
        }
    )
    return ds


# ----------------------------------------------------------------------------- outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one case, small encoder, 2 strides")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "compare")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "compare.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    s = Settings.quick() if args.quick else Settings()
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    surrogate = load_pretrained("tsunami")
    sha = surrogate_checksum(surrogate)
    grid = surrogate.schema.grid
    truth_grid = xr.Dataset(coords={"lat": list(grid["lat"]), "lon": list(grid["lon"])})
    print(f"surrogate sha256 {sha}; training the LD-EnSF encoder on {s.train_runs} runs")
    encoder, net, enc_seconds = train_encoder(surrogate, truth_grid, s)
    print(f"encoder: {enc_seconds:.1f} s, best epoch {encoder.history.best_epoch}")
    results = []
    for i, seed in enumerate(s.seeds):
        results.append(run_case(seed, surrogate, encoder, net, s, s.repeats if i == 0 else 1))
    n_obs = net.n_features * surrogate.schema.n_frames
    ds = collect(results, s, enc_seconds, n_obs, len(grid["lat"]))
    ds.attrs["surrogate_sha256"] = sha
    ds.to_netcdf(args.out / "scores.nc")
    figures = plot(ds, args.out)
    (args.out / "table.md").write_text(table(ds) + "\n\n" + sweep_table(ds) + "\n")
    command = "OMP_NUM_THREADS=1 python benchmarks/accuracy/compare.py" + (
        " --quick" if args.quick else ""
    )
    write_markdown(ds, figures, args.doc, command, sha)
    print(table(ds))
    print(sweep_table(ds))
    print("\n".join(targets(ds)))
    print(f"written to {args.out} and {args.doc}; total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
