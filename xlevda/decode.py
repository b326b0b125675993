"""From a cycle's analyses to values at the output times and places.

:func:`latent_at_outputs` runs each window's analysis to the output times it
supplies; :func:`decode_block` decodes one dask block of them to one variable at
every output point (the model-error draws or the field analysis' increments
included).  Torch and numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from xlevda.core.dynamics import interpolate_trajectory, trajectory
from xlevda.cycle import Cycle
from xlevda.errors import VariableError
from xlevda.field_increments import FieldIncrements
from xlevda.surrogates.protocol import Surrogate

__all__ = [
    "FieldTerm",
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


@dataclass(frozen=True)
class FieldTerm:
    """The field analysis' increments as every decoded block of a case needs them.

    Attributes
    ----------
    increments : FieldIncrements
    points : ndarray (P, n_coords)
        The output points, normalized.
    model_free : bool
        The fields are the increments alone (OI: its constant background included);
        the surrogate decodes nothing.
    """

    increments: FieldIncrements
    points: np.ndarray
    model_free: bool = False


def _add_model_error(
    out: Tensor, std: np.ndarray | Tensor, seed: int, channel: int, origin: tuple[int, int]
) -> None:
    """Add normal draws in place, each from ``(seed, channel, t, k)``.

    ``std``: per time of the block, a standard deviation (t,) or one per point (t, P);
    ``origin``: the block's first output time and member.
    """
    t0, k0 = origin
    gen = torch.Generator(device=out.device)
    draw = torch.empty(out.shape[-1], dtype=out.dtype, device=out.device)
    per_point = isinstance(std, Tensor)
    for i in range(out.shape[0]):
        if not bool((std[i] > 0).any()) if per_point else std[i] <= 0:
            continue
        for j in range(out.shape[1]):
            key = np.random.SeedSequence((seed, channel, t0 + i, k0 + j)).generate_state(1)
            gen.manual_seed(int(key[0]))
            torch.randn(out.shape[-1], generator=gen, out=draw)
            if per_point:
                out[i, j].addcmul_(draw, std[i])
            else:
                out[i, j].add_(draw, alpha=float(std[i]))


def _refuse_non_finite(out: Tensor, s: Tensor, name: str, block_info: dict | None) -> None:
    """A :class:`~xlevda.errors.VariableError` naming where the decoded values are not finite."""
    t0, k0 = (0, 0)
    if block_info:
        (t0, _), (k0, _) = block_info[0]["array-location"][:2]
    bad = ~torch.isfinite(out)
    t, k = bad.any(-1).nonzero()[0].tolist()
    why = (
        "its latent state is finite: the decoder fails there"
        if bool(torch.isfinite(s[t, k]).all())
        else "its latent state is not finite: the surrogate's forecast failed between analyses"
    )
    raise VariableError(
        f"the surrogate decoded non-finite values of {name!r}: {int(bad.sum())} of "
        f"{bad.numel()} values of a block, first at output time index {t0 + t}, member "
        f"{k0 + k}; {why}"
    )


def decode_block(
    latent: np.ndarray,
    model: Surrogate,
    prepared: Tensor,
    dtype,
    channel: int,
    error_std: np.ndarray | None,
    seed: int,
    field: FieldTerm | None = None,
    block_info: dict | None = None,
) -> np.ndarray:
    """Decode one channel of a (t, k, d_s) block at all points -> (t, k, P), denormalized.

    One task per variable and block: a block decoded once for all variables would stay in
    memory until the last variable's chunk is written, which made NetCDF writes hold most
    of the analysis at once.  ``error_std`` (all output times, normalized units) adds the
    model-error term (:class:`~xlevda.model_error.ModelErrorTerm`), drawn per (output time,
    member) from ``(seed, channel, time, member)`` so that no chunking changes it.
    ``field`` adds the field analysis' increments of the block's times and members.
    """
    norm = model.schema.output_norm
    with torch.no_grad():
        s = torch.as_tensor(latent, dtype=dtype, device=model_device(model))
        if field is not None and field.model_free:
            out = torch.zeros((*s.shape[:2], len(field.points)), dtype=dtype, device=s.device)
        elif callable(getattr(model, "decode_channel", None)):
            out = model.decode_channel(s, prepared, channel)
        else:
            out = model.decode_prepared(s, prepared)[..., channel]
        if not bool(torch.isfinite(out).all()):
            _refuse_non_finite(out, s, model.schema.variables[channel], block_info)
        # written in place below: a view (of all channels, of the prepared points, an
        # expanded state) is copied first, so the block owns exactly its own values
        shared = out._base is not None or out.data_ptr() in (prepared.data_ptr(), s.data_ptr())
        if shared or not out.is_contiguous():
            out = out.clone(memory_format=torch.contiguous_format)
        # dask passes block_info to a function that takes it
        where = [(0, out.shape[0]), (0, out.shape[1])]
        (t0, t1), (k0, k1) = block_info[0]["array-location"][:2] if block_info else where
        if error_std is not None:
            _add_model_error(out, error_std[t0:t1], seed, channel, (t0, k0))
        if field is not None:
            weight = field.increments.model_weight(channel, slice(t0, t1))
            if weight is not None and not field.model_free:
                out.mul_(torch.as_tensor(weight, dtype=out.dtype, device=out.device)[:, None, None])
            points = torch.as_tensor(field.points, device=out.device)
            inc, std = field.increments.block(channel, points, slice(t0, t1), slice(k0, k1))
            out.add_(inc.to(out.dtype))
            if std is not None:
                _add_model_error(out, std.to(out.dtype), seed, channel, (t0, k0))
        # denormalized in place, in the output's precision
        out.mul_(norm.scale[channel]).add_(norm.offset[channel])
    return out.cpu().numpy().astype(numpy_dtype(dtype), copy=False)
