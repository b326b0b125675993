"""Separable decoder in LEVDA: folded basis against coefficients first, side by side.

One window cost and its gradient (eq. 19, K = 100 members, 5 observation times x
100 points x 3 channels, float32, one thread), evaluated through the surrogate's two
equivalent decoding paths:

- ``folded``: ``prepare_points`` folds the basis into the coefficient network's
  output layer once per window; each evaluation is ``[h(s), 1] @ [Psi W, Psi beta]``;
- ``coefficients``: each evaluation forms the coefficients ``c(s) = W h(s) + beta``
  and contracts them with the basis (``basis_points`` / ``decode_basis``).

Runs alternate; prints the median time per evaluation of each, their ratio and the
largest difference of the costs.

The surrogate is ``--surrogate`` (a saved LDNet with a separable decoder, e.g. from
``examples/train_tsunami_surrogate.py --decoder separable``), by default an untrained one of
the sizes of the tsunami surrogate shipped before the linear LDNet replaced it (its separable
decoder: 256 basis functions, 128 x 4 basis and 128 x 3 coefficient networks, 64 Fourier
features; latent dimension 12) on the shipped surrogate's schema: the shipped surrogate now
has a cosine decoder, which has neither path.

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/speed/separable_paths.py --repeats 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import xlevda
from xlevda.core.objective import WindowObjective
from xlevda.core.window import ObsWindow
from xlevda.surrogates.ldnet import LDNetModel


class CoefficientsFirst:
    """The same surrogate, decoding through its coefficients (the unfolded path)."""

    def __init__(self, model: LDNetModel) -> None:
        self.model = model
        self.latent_dim, self.param_dim = model.latent_dim, model.param_dim
        self.schema, self.dt = model.schema, model.dt

    def vector_field(self, s, u):
        return self.model.vector_field(s, u)

    def prepare_points(self, points):
        return self.model.decoder.basis_points(points)

    def decode_prepared(self, s, prepared):
        return self.model.decoder.decode_basis(s, prepared)


def separable_surrogate(path: str | None) -> LDNetModel:
    """The LDNet saved at ``path``, or the untrained default of the module docstring."""
    if path is not None:
        return xlevda.load_surrogate(path)
    decoder = xlevda.SeparableDecoderConfig(
        n_basis=256, basis_width=128, basis_depth=4, coef_width=128, coef_depth=3, n_fourier=64
    )
    config = xlevda.LDNetConfig(
        latent_dim=12, dynamics_width=64, dynamics_depth=4, decoder=decoder, dt0=0.1
    )
    return LDNetModel(config, xlevda.load_pretrained("tsunami").schema).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--surrogate", default=None, help="a saved separable-decoder LDNet")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = separable_surrogate(args.surrogate)
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    k, n_t, n_p, n_c = args.members, 5, 100, model.schema.n_channels
    z_b = 0.3 * torch.randn(k, model.latent_dim + model.param_dim, generator=gen)
    points = 2 * torch.rand(n_t, n_p, model.schema.n_coords, generator=gen) - 1
    values = torch.randn(n_t, n_p, n_c, generator=gen)
    window = ObsWindow(torch.arange(n_t), torch.zeros(n_t), points, values, torch.ones_like(values))
    objectives = {
        "folded": WindowObjective.build(model, z_b, window),
        "coefficients": WindowObjective.build(CoefficientsFirst(model), z_b, window),
    }
    members = torch.arange(k)
    beta = objectives["folded"].start.clone()

    def evaluate(objective: WindowObjective) -> tuple[float, torch.Tensor]:
        x = beta.clone().requires_grad_(True)
        start = time.perf_counter()
        cost = objective.cost(x, members)
        torch.autograd.grad(cost.sum(), x)
        return time.perf_counter() - start, cost.detach()

    times: dict[str, list[float]] = {name: [] for name in objectives}
    costs = {}
    for i in range(args.repeats + 5):
        for name, objective in objectives.items():
            seconds, costs[name] = evaluate(objective)
            if i >= 5:  # warm-up
                times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, t in median.items():
        print(f"{name:13s} {1e3 * t:7.2f} ms per cost + gradient (median of {args.repeats})")
    rel = ((costs["folded"] - costs["coefficients"]).abs() / costs["coefficients"].abs()).max()
    print(
        f"speed-up of the folded path: {median['coefficients'] / median['folded']:.2f}x; "
        f"largest relative cost difference {float(rel):.1e}"
    )


if __name__ == "__main__":
    main()
