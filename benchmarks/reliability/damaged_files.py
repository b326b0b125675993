"""Damage saved surrogate and encoder files in seeded ways and count what loading them does.

Sources: small LDNets (MLP, separable, linear-cosine, learned initial states), an LD-EnSF
encoder, and the shipped ``tsunami`` and ``kolmogorov`` surrogates.  Each damaged file is
one of:

- ``truncate``: cut at a random length;
- ``flip1`` / ``flip8``: 1 or 8 random bits flipped;
- ``block``: 64 random bytes overwritten;
- ``nan_weight``: a random weight entry set to NaN or +-inf, the checksum recomputed (a
  well-formed file with bad values);
- ``huge_size``: a size in the config multiplied by 100-10000, checksum recomputed;
- ``wrong_type``: a config or schema value replaced by a string, None, a list or NaN,
  checksum recomputed;
- ``legacy_edit``: the checksum removed and one weight changed (a file as written before
  checksums: nothing can tell its weights were changed).

Outcomes: ``refused`` (a :class:`~xlevda.errors.SurrogateFileError`), ``same`` (loads,
weights, config and schema identical to the source: the damage hit bytes that do not
matter, such as zip timestamps), ``different`` (loads something else: silent damage),
``other`` (another exception).  Prints the counts per damage and the process's peak RSS::

    PYTHONPATH=. python benchmarks/reliability/damaged_files.py --per-kind 20
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from xlevda.errors import SurrogateFileError
from xlevda.pretrained import load_pretrained
from xlevda.surrogates.config import LDNetConfig, LearnedInitialState, LinearDynamicsConfig
from xlevda.surrogates.decoder_configs import (
    CosineDecoderConfig,
    MLPDecoderConfig,
    SeparableDecoderConfig,
)
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder
from xlevda.surrogates.fileformat import content_sha256
from xlevda.surrogates.fingerprint import SurrogateFingerprint
from xlevda.surrogates.ldnet import LDNetModel
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.schema import SurrogateSchema

SCHEMA = SurrogateSchema.minimal(5, coords=("x", "y"))


def sources(folder: Path) -> dict[str, tuple[Path, Callable]]:
    """The undamaged files: name -> (path, loader)."""
    mlp = LDNetModel(LDNetConfig(latent_dim=4, decoder=MLPDecoderConfig()), SCHEMA)
    models = {
        "mlp": mlp,
        "separable": LDNetModel(
            LDNetConfig(latent_dim=4, decoder=SeparableDecoderConfig(n_basis=8)), SCHEMA
        ),
        "linear": LDNetModel(
            LDNetConfig(
                latent_dim=6,
                learnable_dt=False,
                dynamics=LinearDynamicsConfig(n_centres=5),
                decoder=CosineDecoderConfig(n_terms=4),
            ),
            SCHEMA,
        ),
        "initial_states": LDNetModel(
            LDNetConfig(
                latent_dim=4,
                initial_state=LearnedInitialState(n_runs=6),
                decoder=MLPDecoderConfig(),
            ),
            SCHEMA,
        ),
        "tsunami": load_pretrained("tsunami"),
        "kolmogorov": load_pretrained("kolmogorov"),
    }
    out = {}
    for name, model in models.items():
        path = folder / f"{name}.pt"
        model.save(path)
        out[name] = (path, LDNetModel.load)
    network = ObservationNetwork(points=[[0.0, 0.0], [0.5, 0.5], [-0.5, 0.2]], channels=(0,))
    encoder = ObservationEncoder(EncoderConfig(hidden=16), network, SurrogateFingerprint.of(mlp))
    encoder.save(folder / "encoder.pt")
    out["encoder"] = (folder / "encoder.pt", ObservationEncoder.load)
    return out


def _bytes(kind: str, data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[: rng.randrange(len(buf))])
    if kind in ("flip1", "flip8"):
        for _ in range(1 if kind == "flip1" else 8):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return bytes(buf)
    start = rng.randrange(len(buf) - 64)
    buf[start : start + 64] = rng.randbytes(64)
    return bytes(buf)


_SIZES = ("latent_dim", "dynamics_width", "hidden", "n_basis", "n_terms", "n_runs", "n_centres")


def _size_fields(tree: dict) -> list[tuple[dict, str]]:
    """(container, key) of every integer size field in a config tree."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict):
            out += _size_fields(value)
        elif key in _SIZES and isinstance(value, int):
            out.append((tree, key))
    return out


def _edit(kind: str, payload: dict, rng: random.Random) -> None:
    """Apply a structured damage to a loaded payload (in place)."""
    if kind == "nan_weight":
        floats = sorted(k for k, v in payload["state_dict"].items() if v.is_floating_point())
        t = payload["state_dict"][rng.choice(floats)]
        if t.numel():
            t.view(-1)[rng.randrange(t.numel())] = rng.choice([float("nan"), float("inf"), -1e999])
    elif kind == "huge_size":
        tree, key = rng.choice(_size_fields(payload["config"]))
        tree[key] *= rng.choice([100, 1000, 10000])
    elif kind == "wrong_type":
        part = rng.choice([k for k in ("config", "schema", "network") if k in payload])
        key = rng.choice(sorted(payload[part]))
        payload[part][key] = rng.choice(["x", None, [1, "a"], float("nan")])
    elif kind == "legacy_edit":
        del payload["sha256"]
        floats = sorted(k for k, v in payload["state_dict"].items() if v.numel() > 1)
        t = payload["state_dict"][rng.choice(floats)]
        t.view(-1)[rng.randrange(t.numel())] += 0.5
        return
    payload["sha256"] = content_sha256(payload)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys() or not all(torch.equal(sa[k], sb[k]) for k in sa):
        return False
    return getattr(a, "schema", None) == getattr(b, "schema", None)


def outcome(path: Path, load: Callable, reference: torch.nn.Module) -> str:
    """What loading ``path`` does: refused, same, different, or other: <exception type>.

    ``unused config`` is a load with the very weights and schema but another config value
    that the architecture does not use (e.g. the MLP width of a linear LDNet).
    """
    try:
        loaded = load(path)
    except SurrogateFileError:
        return "refused"
    except Exception as err:  # counted: the benchmark's point
        return f"other: {type(err).__name__}"
    if not _same_weights(loaded, reference):
        return "different"
    if loaded.config == reference.config:
        return "same"
    changed = sorted(
        k for k in vars(loaded.config) if getattr(loaded.config, k) != getattr(reference.config, k)
    )
    return f"unused config {', '.join(changed)}"


BYTE_KINDS = ("truncate", "flip1", "flip8", "block")
EDIT_KINDS = ("nan_weight", "huge_size", "wrong_type", "legacy_edit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=20, help="damaged files per damage kind")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    counts: dict[str, Counter] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = sources(folder)
        refs = {name: load(path) for name, (path, load) in files.items()}
        names = sorted(files)
        n = 0
        for kind in BYTE_KINDS + EDIT_KINDS:
            counts[kind] = Counter()
            for i in range(args.per_kind):
                name = names[i % len(names)]
                path, load = files[name]
                bad = folder / f"bad_{kind}_{i}.pt"
                if kind in BYTE_KINDS:
                    bad.write_bytes(_bytes(kind, path.read_bytes(), rng))
                else:
                    payload = torch.load(path, weights_only=True)
                    _edit(kind, payload, rng)
                    torch.save(payload, bad)
                counts[kind][outcome(bad, load, refs[name])] += 1
                bad.unlink()
                n += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n} damaged files from {len(names)} sources ({', '.join(names)}), seed {args.seed}")
    total: Counter = Counter()
    for kind, c in counts.items():
        total += c
        print(f"{kind:>12}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    print(f"{'all':>12}: " + ", ".join(f"{k} {v}" for k, v in sorted(total.items())))
    print(f"peak RSS of the process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
