"""What the per-observation departures cost inside the demo's LEVDA assimilation.

The demo's twin (tsunami 48x48 with the shipped surrogate, 100 sensors x 51 frames of
u, v, eta: 15,300 values, K = 100, window 5, float32): the wall time of
:func:`xlevda.assimilate` and, inside it, the time the driver spends in
:func:`xlevda.departures.predict` (the background's and the analysis' predictions of
each window's observations, the departures' only extra work) and in
:func:`xlevda.departures.forecast` (the background run to the window's anchor, which the
method then uses instead of running it itself), and in
:func:`xlevda.departures.field_at_observations` (the analysis fields at the
observations, for ``{v}_obs_minus_analysis_field``).  One torch thread.

Run from the repository root: ``PYTHONPATH=. python benchmarks/speed/departures_cost.py``.
"""

from __future__ import annotations

import time
import warnings

import torch

import xlevda.driver as driver
import xlevda.io as io
from xlevda.demo import simulate_truth
from xlevda.methods import LEVDA
from xlevda.pretrained import load_pretrained
from xlevda.run import RunOptions
from xlevda.systems import observe


def main(repeats: int = 2) -> None:
    torch.set_num_threads(1)
    spent = {"predict": 0.0, "forecast": 0.0, "field_at_observations": 0.0}
    for name in spent:
        module = io if name == "field_at_observations" else driver
        inner = getattr(module, name)

        def timed(*args, _inner=inner, _name=name, **kwargs):
            t0 = time.perf_counter()
            out = _inner(*args, **kwargs)
            spent[_name] += time.perf_counter() - t0
            return out

        setattr(module, name, timed)
    model = load_pretrained("tsunami")
    truth, _ = simulate_truth(model, 0, "tsunami")
    truth = truth[list(model.schema.variables)]
    obs = observe.observe(truth[["u", "v", "eta"]], observe.GridStride(5), noise_ratio=0.1, seed=1)
    target = truth.drop_vars(list(truth.data_vars))
    run = RunOptions(members=100, progress=False)
    for _ in range(repeats):
        spent.update(dict.fromkeys(spent, 0.0))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target.levda.assimilate(obs, model, LEVDA(window=5), run=run)
        total = time.perf_counter() - t0
        print(
            f"assimilate {total:.2f} s; predict {spent['predict']:.2f} s "
            f"({100 * spent['predict'] / total:.0f} %); field at obs "
            f"{spent['field_at_observations']:.2f} s; forecast {spent['forecast']:.2f} s "
            "(serves the method too)"
        )


if __name__ == "__main__":
    main()
