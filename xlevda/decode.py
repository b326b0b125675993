"""From a cycle's analyses to values at the output times and places.

:func:`latent_at_outputs` runs each window's analysis to the output times it
supplies; :func:`decode_block` decodes one dask block of them to one variable at
every output point (the model-error draws included).  Torch and numpy only.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xlevda.core.dynamics import interpolate_trajectory, trajectory
from xlevda.cycle import Cycle
from xlevda.surrogates.protocol import Surrogate

__all__ = [
    "decode_block",
    "latent_at_outputs",
    "model_device",
    "numpy_dtype",
    "prepare_output_points",
]


def latent_at_outputs(
    model: Surrogate, cycle: Cycle, step: np.ndarray, frac: np.ndarray, dtype, device
) -> tuple[np.ndarray, np.ndarray]:
    """Latent states and parameters at output times from the supplying windows.

    Window ``w`` supplies the output times at or after its anchor and before the next
    window's (the last window every later time).

    Returns ``z`` (T, K, d_z) and ``window_index`` (T,).
    """
    which = np.searchsorted(cycle.anchors, step, side="right") - 1
    n_times, members = len(step), cycle.z_analysis.shape[1]
    out = np.zeros((n_times, members, cycle.z_analysis.shape[2]))
    with torch.no_grad():
        for w in np.unique(which):
            sel = np.nonzero(which == w)[0]
            rel = step[sel] - cycle.anchors[w]
            za = torch.as_tensor(cycle.z_analysis[w], dtype=dtype, device=device)
            n = int((rel + (frac[sel] > 0)).max())
            z = interpolate_trajectory(
                trajectory(model, za, n),  # (K, n+1, d_z)
                torch.as_tensor(rel, device=device),
                torch.as_tensor(frac[sel], dtype=dtype, device=device),
            )
            out[sel] = z.transpose(0, 1).cpu().double().numpy()
    return out, which


def model_device(model: Surrogate) -> torch.device | str:
    """The device of a torch model's parameters (``"cpu"`` for other models)."""
    return next(model.parameters()).device if isinstance(model, torch.nn.Module) else "cpu"


def numpy_dtype(dtype: torch.dtype) -> type[np.floating]:
    """The output fields' dtype: the computation's (``RunOptions.dtype``)."""
    return np.float64 if dtype == torch.float64 else np.float32


def prepare_output_points(model: Surrogate, points: np.ndarray, dtype) -> Tensor:
    """The output points prepared once per analysis (one dask task shared by every block)."""
    tensor = torch.as_tensor(points, dtype=dtype, device=model_device(model))
    with torch.no_grad():
        return model.prepare_points(tensor)


def _add_model_error(
    out: Tensor, error_std: np.ndarray, seed: int, channel: int, block_info: dict
) -> None:
    """Add ``N(0, error_std[t]^2)`` draws in place, each from ``(seed, channel, t, k)``."""
    (t0, t1), (k0, k1) = block_info[0]["array-location"][:2]
    gen = torch.Generator(device=out.device)
    draw = torch.empty(out.shape[-1], dtype=out.dtype, device=out.device)
    for i, t in enumerate(range(t0, t1)):
        if error_std[t] > 0:
            for j, k in enumerate(range(k0, k1)):
                key = np.random.SeedSequence((seed, channel, t, k)).generate_state(1)
                gen.manual_seed(int(key[0]))
                torch.randn(out.shape[-1], generator=gen, out=draw)
                out[i, j].add_(draw, alpha=float(error_std[t]))


def decode_block(
    latent: np.ndarray,
    model: Surrogate,
    prepared: Tensor,
    dtype,
    channel: int,
    error_std: np.ndarray | None,
    seed: int,
    block_info: dict | None = None,
) -> np.ndarray:
    """Decode one channel of a (t, k, d_s) block at all points -> (t, k, P), denormalized.

    One task per variable and block: a block decoded once for all variables would stay in
    memory until the last variable's chunk is written, which made NetCDF writes hold most
    of the analysis at once.  ``error_std`` (all output times, normalized units) adds the
    model-error term (:class:`~xlevda.model_error.ModelErrorTerm`), drawn per (output time,
    member) from ``(seed, channel, time, member)`` so that no chunking changes it.
    """
    norm = model.schema.output_norm
    with torch.no_grad():
        s = torch.as_tensor(latent, dtype=dtype, device=model_device(model))
        if callable(getattr(model, "decode_channel", None)):
            out = model.decode_channel(s, prepared, channel)
        else:
            out = model.decode_prepared(s, prepared)[..., channel]
        # written in place below: a view (of all channels, of the prepared points, an
        # expanded state) is copied first, so the block owns exactly its own values
        shared = out._base is not None or out.data_ptr() in (prepared.data_ptr(), s.data_ptr())
        if shared or not out.is_contiguous():
            out = out.clone(memory_format=torch.contiguous_format)
        if error_std is not None:  # dask passes block_info to a function that takes it
            _add_model_error(out, error_std, seed, channel, block_info)
        # denormalized in place, in the output's precision
        out.mul_(norm.scale[channel]).add_(norm.offset[channel])
    return out.cpu().numpy().astype(numpy_dtype(dtype), copy=False)
