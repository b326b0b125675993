"""Random streams from a seed: the one way core code turns a seed into a generator."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from xlevda.errors import ConfigError

__all__ = ["check_seed", "generator", "normal"]


def check_seed(name: str, seed: object) -> None:
    """Raise unless ``seed`` is an int ``>= 0`` (not a bool) or a ``torch.Generator``.

    The one torch-aware config check; the others are in :mod:`xlevda.validate`.

    Examples
    --------
    >>> check_seed("seed", 3)
    >>> check_seed("seed", -1)
    Traceback (most recent call last):
    ...
    xlevda.errors.ConfigError: seed must be an int >= 0 or a torch.Generator, got -1
    """
    if isinstance(seed, torch.Generator):
        return
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{name} must be an int >= 0 or a torch.Generator, got {seed!r}")


def generator(
    seed: int | torch.Generator, *stream: int, device: torch.device | str | None = None
) -> torch.Generator:
    """A ``torch.Generator`` for ``seed``, or for one of its independent streams.

    Parameters
    ----------
    seed : int or torch.Generator
        A generator is returned as it is (it advances with every draw; ``stream``
        and ``device`` are then ignored).
    *stream : int
        Keys of an independent stream.  Without keys the generator is seeded with
        ``seed`` itself; with keys, with 64 bits of
        ``numpy.random.SeedSequence(seed, spawn_key=stream)``, so that the streams of
        one seed (e.g. inflation noise and observation perturbations) never coincide.
    device : torch.device or str, optional
        Of the generator (default CPU).

    Returns
    -------
    torch.Generator

    Examples
    --------
    >>> import torch
    >>> a = torch.rand(2, generator=generator(7))
    >>> bool((a == torch.rand(2, generator=torch.Generator().manual_seed(7))).all())
    True
    >>> b, c = (torch.rand(2, generator=generator(7, k)) for k in (0, 1))
    >>> bool((b == c).any())
    False
    """
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator() if device is None else torch.Generator(device=device)
    if not stream:
        return gen.manual_seed(seed)
    state = np.random.SeedSequence(seed, spawn_key=stream).generate_state(2, np.uint32)
    return gen.manual_seed(int(state[0]) << 32 | int(state[1]))


def normal(shape: tuple[int, ...], gen: torch.Generator, like: Tensor) -> Tensor:
    """Standard normal draws of ``shape`` in the dtype and on the device of ``like``.

    Drawn on the generator's device, then moved, so that a CPU generator gives the
    same numbers whatever device ``like`` is on.

    Examples
    --------
    >>> import torch
    >>> normal((2, 3), generator(0), torch.zeros((), dtype=torch.float64)).dtype
    torch.float64
    """
    draw = torch.randn(shape, generator=gen, dtype=like.dtype, device=gen.device)
    return draw.to(like.device)
