"""LD-EnSF in the xarray layer: observation networks, encoder training, observation matrices.

The torch numerics live in :mod:`xlevda.surrogates.encoder` (the LSTM encoder)
and :mod:`xlevda.core.ldensf` (the latent ensemble score filter).  This module
turns labelled observations into what they need: the fixed
:class:`~xlevda.surrogates.observation_network.ObservationNetwork` of a sensor array, the
normalized observation histories of training runs, and the ``(T, P * C)``
observation matrix of one case.  ``ds.levda.assimilate(obs, surrogate,
xlevda.LDEnSF(encoder))`` (:class:`xlevda.methods.LDEnSF`) calls
:func:`observation_matrix`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import xarray as xr

from xlevda._convert import find_time, spatial_layout, times_to_steps, to_points
from xlevda._obs import ObsTable, obs_table
from xlevda.errors import CoordinateError, ObservationError, VariableError
from xlevda.surrogates.encoder import EncoderConfig, ObservationEncoder
from xlevda.surrogates.encoder_training import fit_encoder, surrogate_histories
from xlevda.surrogates.observation_network import ObservationNetwork
from xlevda.surrogates.protocol import Surrogate

__all__ = ["observation_frames", "observation_matrix", "observation_network", "train_encoder"]

_FRAC_TOL = 1e-6  # observation times within a millionth of a step of a frame are on it


def observation_frames(table: ObsTable) -> np.ndarray:
    """The surrogate frame of every row of an observation table.

    Raises
    ------
    ObservationError
        For a time between frames (more than a millionth of a step off).
    """
    position = table.step + table.frac
    frames = np.rint(position)
    off = np.abs(position - frames) > _FRAC_TOL
    if off.any():
        raise ObservationError(
            f"{int(off.sum())} observation time(s) fall between the surrogate's frames, e.g. "
            f"{table.time[off][0]}: the LD-EnSF encoder reads observations at frames only"
        )
    return frames.astype(np.int64)


def _point_index(points: np.ndarray, reference: np.ndarray, what: str) -> np.ndarray:
    """Row of ``reference`` (R, n) equal to each of ``points`` (M, n) within 1e-6.

    Matched through a dictionary of rounded coordinates (no M x R array); a coordinate
    near a rounding boundary is also looked up in the neighbouring cells.
    """
    scale = 1e6
    table: dict[tuple[int, ...], int] = {}
    for i, key in enumerate(map(tuple, np.rint(reference * scale).astype(np.int64).tolist())):
        table.setdefault(key, i)
    index = np.full(len(points), -1, dtype=np.int64)
    for i, key in enumerate(map(tuple, np.rint(points * scale).astype(np.int64).tolist())):
        j = table.get(key)
        if j is None:  # a rounding boundary: try the neighbours
            for shift in np.ndindex(*(3,) * len(key)):
                j = table.get(tuple(k + d - 1 for k, d in zip(key, shift, strict=True)))
                if j is not None and np.abs(reference[j] - points[i]).max() <= 1e-6:
                    break
                j = None
        if j is not None and np.abs(reference[j] - points[i]).max() <= 1e-6:
            index[i] = j
    if (index < 0).any():
        i = int(np.argmax(index < 0))
        raise ObservationError(
            f"{what} at normalized position {points[i].tolist()} matches no point (within 1e-6)"
        )
    return index


def observation_network(
    obs: xr.Dataset,
    surrogate: Surrogate,
    *,
    variables: Sequence[str] | None = None,
    errors: Mapping[str, float] | None = None,
) -> ObservationNetwork:
    """The fixed sensor network of an observation Dataset, as the encoder sees it.

    Every observation time must be a surrogate frame, evenly spaced in frames,
    and every time must observe the same points and variables.

    Parameters
    ----------
    obs : Dataset
        Observations in the point or gridded-with-NaN form (see
        :func:`xlevda.api.assimilate`); their values are not used.
    surrogate : Surrogate
    variables : sequence of str, optional
        Observed variables (default: all in ``obs``).
    errors : mapping, optional
        Error standard deviations for variables without ``<var>_std``.

    Returns
    -------
    ObservationNetwork

    Raises
    ------
    ObservationError
        Times off the frames or unevenly spaced, or points and variables that
        change between times.
    """
    table = obs_table(obs, surrogate.schema, variables=variables, errors=errors)
    frames = observation_frames(table)
    uniq = np.unique(frames)
    stride = int(uniq[1] - uniq[0]) if len(uniq) > 1 else 1
    if len(uniq) > 1 and not (np.diff(uniq) == stride).all():
        raise ObservationError(
            f"observation frames {uniq.tolist()} are not evenly spaced: the LD-EnSF encoder "
            "needs a fixed observation interval"
        )
    first = frames == uniq[0]
    points = np.unique(table.points[first], axis=0)
    channels = tuple(int(c) for c in np.unique(table.channel[first]))
    network = ObservationNetwork(
        points=points, channels=channels, first_frame=int(uniq[0]), frame_stride=stride
    )
    observation_matrix(table, network)  # every time must observe the same network
    return network


def observation_matrix(table: ObsTable, network: ObservationNetwork) -> np.ndarray:
    """Normalized observations of one case in the encoder's layout, ``(T, P * C)``.

    Raises
    ------
    ObservationError
        If the observations are not exactly the network: other frames, a point
        or variable the network lacks, a missing or repeated value.
    """
    frames = observation_frames(table)
    uniq = np.unique(frames)
    expected = network.first_frame + network.frame_stride * np.arange(len(uniq))
    if not np.array_equal(uniq, expected):
        raise ObservationError(
            f"observations are at frames {uniq.tolist()}, but the encoder's network observes "
            f"frames {network.first_frame}, {network.first_frame + network.frame_stride}, ... "
            f"(every {network.frame_stride})"
        )
    try:
        point = _point_index(table.points, np.asarray(network.points), "observation")
    except ObservationError as err:
        raise ObservationError(
            f"{err}: it is not a point of the encoder's network of {network.n_points}"
        ) from None
    chan_pos = {c: j for j, c in enumerate(network.channels)}
    if any(int(c) not in chan_pos for c in np.unique(table.channel)):
        raise ObservationError(
            f"observed channels {np.unique(table.channel).tolist()} differ from the encoder "
            f"network's {list(network.channels)}"
        )
    channel = np.array([chan_pos[int(c)] for c in table.channel])
    row = np.searchsorted(uniq, frames)
    col = point * network.n_channels + channel
    count = np.zeros((len(uniq), network.n_features), dtype=np.int64)
    np.add.at(count, (row, col), 1)
    if (count != 1).any():
        r, c = np.argwhere(count != 1)[0]
        what = "missing" if count[r, c] == 0 else "given more than once"
        raise ObservationError(
            f"at frame {uniq[r]}, network point {c // network.n_channels} channel "
            f"{network.channels[c % network.n_channels]} is {what}: the encoder needs every "
            "point and variable of its network exactly once at every observation time"
        )
    out = np.zeros((len(uniq), network.n_features))
    out[row, col] = table.value
    return out


def _run_histories(
    runs: xr.Dataset, surrogate: Surrogate, network: ObservationNetwork, run_dim: str
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized observations of training runs at the network, (R, T, P*C), and params."""
    schema = surrogate.schema
    time = find_time(runs)
    layout = spatial_layout(runs, schema.coords)
    pts, _ = to_points(runs, schema)
    if runs.sizes[time] != schema.n_frames:
        raise CoordinateError(
            f"training runs have {runs.sizes[time]} frames along {time!r}, expected the "
            f"surrogate's {schema.n_frames}"
        )
    step, frac = times_to_steps(np.asarray(runs[time].values), schema, name=f"runs {time}")
    if not (np.array_equal(step, np.arange(schema.n_frames)) and np.allclose(frac, 0, atol=1e-6)):
        raise CoordinateError(f"training runs' {time!r} values are not the surrogate's frame times")
    n_obs = (schema.n_frames - 1 - network.first_frame) // network.frame_stride + 1
    if n_obs < 1:
        raise ObservationError(
            f"the network's first frame {network.first_frame} is beyond the surrogate's last "
            f"frame {schema.n_frames - 1}"
        )
    frames = network.first_frame + network.frame_stride * np.arange(n_obs)
    try:
        where = _point_index(np.asarray(network.points), pts, "network point")
    except ObservationError as err:
        raise ObservationError(
            f"{err} of the training runs: observe the runs on their own grid "
            "(e.g. observe.GridStride)"
        ) from None
    names = [schema.variables[c] for c in network.channels]
    for v in names:
        if v not in runs.data_vars:
            raise VariableError(f"training runs lack the observed variable {v!r}")
    # index the network's points before loading, so that dask reads only them
    shape = tuple(runs.sizes[d] for d in layout.dims)
    at = {
        d: xr.DataArray(i, dims="network_point")
        for d, i in zip(layout.dims, np.unravel_index(where, shape), strict=True)
    }
    stacked = [
        runs[v].isel({time: frames, **at}).transpose(run_dim, time, "network_point").values
        for v in names
    ]
    values = np.stack(stacked, -1)  # (R, T, P, C)
    norm = schema.output_norm
    offset = np.asarray(norm.offset)[list(network.channels)]
    scale = np.asarray(norm.scale)[list(network.channels)]
    values = ((values - offset) / scale).reshape(values.shape[0], n_obs, -1)
    params = np.stack([np.asarray(runs[p].values, float) for p in schema.params], -1)
    return values, schema.param_norm.normalize(params)


def train_encoder(
    surrogate: Surrogate,
    network: ObservationNetwork,
    runs: xr.Dataset | None = None,
    config: EncoderConfig | None = None,
    *,
    synthetic_runs: int = 256,
    run_dim: str = "run",
    progress: bool = False,
) -> ObservationEncoder:
    """Train the LD-EnSF observation encoder for a surrogate and a sensor network.

    Parameters
    ----------
    surrogate : Surrogate
    network : ObservationNetwork
        From :func:`observation_network`.
    runs : Dataset, optional
        Simulated training runs (dims ``(run_dim, time, *space)``, the surrogate's
        variables and parameters), observed at the network's grid points: the
        paper's way.  Without it, ``synthetic_runs`` histories are generated by the
        surrogate itself from its parameter prior.
    config : EncoderConfig, optional
    synthetic_runs : int
        Number of surrogate-generated runs when ``runs`` is not given.
    run_dim : str
        Run dimension of ``runs``.
    progress : bool
        Show a progress bar.

    Returns
    -------
    ObservationEncoder
        Save it with ``encoder.save(path)``; load it with
        ``ObservationEncoder.load(path, surrogate, network)``.
    """
    config = EncoderConfig() if config is None else config
    if runs is None:
        n_obs = (surrogate.schema.n_frames - 1 - network.first_frame) // network.frame_stride + 1
        histories, params = surrogate_histories(
            surrogate, network, synthetic_runs, n_obs, seed=config.seed
        )
    else:
        y, u = _run_histories(runs, surrogate, network, run_dim)
        histories, params = torch.as_tensor(y), torch.as_tensor(u)
    like = torch.as_tensor(surrogate.dt)
    return fit_encoder(
        surrogate,
        network,
        histories.to(like),
        params.to(like),
        config,
        progress=progress,
    )
