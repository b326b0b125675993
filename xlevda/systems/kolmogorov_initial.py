"""Initial conditions of the Kolmogorov benchmark (:mod:`xlevda.systems.kolmogorov`).

The draws of run settings (:func:`sample_reynolds`: Reynolds numbers and, optionally,
one initial-condition seed per run), the seeded random initial vorticity
(:func:`initial_spectrum`) and the checks of the initial conditions
:func:`~xlevda.systems.kolmogorov.simulate` is given: a field (``initial_vorticity``)
or one random field per run (``initial_seed``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from xlevda.errors import ConfigError, ShapeError, VariableError
from xlevda.systems.kolmogorov_spectral import SpectralOperators, velocity
from xlevda.validate import is_int, is_real

if TYPE_CHECKING:
    from xlevda.systems.kolmogorov import KolmogorovConfig

__all__ = ["check_initial", "check_seeds", "initial_spectrum", "sample_reynolds"]


def check_initial(initial, n_runs: int, ny: int, nx: int) -> np.ndarray | None:
    """``initial_vorticity`` as an array (``(ny, nx)`` or ``(n_runs, ny, nx)``), checked."""
    if initial is None:
        return None
    values = np.asarray(initial, dtype=float)
    grid = (ny, nx)
    if values.shape not in (grid, (n_runs, *grid)):
        raise ShapeError(
            f"initial_vorticity must have shape (ny, nx) = {grid} or (n_runs, ny, nx) = "
            f"{(n_runs, *grid)}, got {values.shape}"
        )
    if not np.all(np.isfinite(values)):
        raise VariableError("initial_vorticity must be finite everywhere, got NaN or inf values")
    return values


def check_seeds(initial_seed, n_runs: int, has_vorticity: bool) -> np.ndarray | None:
    """``initial_seed`` as an int64 array ``(n_runs,)`` of integers >= 0, checked.

    Examples
    --------
    >>> check_seeds([3, 5], 2, False).tolist()
    [3, 5]
    """
    if initial_seed is None:
        return None
    if has_vorticity:
        raise ConfigError(
            "initial_seed and initial_vorticity both set the initial condition: give one"
        )
    values = np.atleast_1d(np.asarray(initial_seed))
    if values.shape != (n_runs,):
        raise ShapeError(
            f"initial_seed must have shape (n_runs,) = ({n_runs},), got {values.shape}"
        )
    if not all(is_int(v) and v >= 0 for v in values.tolist()):
        raise VariableError(f"initial_seed must hold integers >= 0, got {values.tolist()!r}")
    return values.astype(np.int64)


def initial_spectrum(config: KolmogorovConfig, seed: int, op: SpectralOperators) -> torch.Tensor:
    """Random initial vorticity of ``seed``, spectral ``(ny, nx // 2 + 1)``, complex128.

    See the Notes of :func:`~xlevda.systems.kolmogorov.simulate`; ``op`` are the
    grid's float64 CPU operators.
    """
    kp = config.initial_peak_wavenumber
    cut = math.ceil(4 * kp)
    gen = torch.Generator().manual_seed(int(seed))
    draws = torch.randn(2 * cut + 1, cut + 1, 2, generator=gen, dtype=torch.float64)
    ky = torch.arange(-cut, cut + 1, dtype=torch.float64)[:, None]
    kx = torch.arange(cut + 1, dtype=torch.float64)[None, :]
    k = torch.sqrt(kx**2 + ky**2)
    energy = (k / kp) ** 4 * torch.exp(-2 * (k / kp) ** 2)  # E(k), peak at k = kp
    coeffs = torch.complex(draws[..., 0], draws[..., 1]) * torch.sqrt(energy * k)
    omega_hat = torch.zeros(config.ny, config.nx // 2 + 1, dtype=torch.complex128)
    keep_x, keep_y = config.kept_wavenumbers
    nkx, nky = min(cut, keep_x), min(cut, keep_y)
    rows = torch.arange(-nky, nky + 1)
    omega_hat[rows % config.ny, : nkx + 1] = coeffs[rows + cut, : nkx + 1]
    # symmetrize the k_x = 0 column through a real field
    omega = torch.fft.irfft2(omega_hat, s=(config.ny, config.nx))
    omega_hat = torch.fft.rfft2(omega) * op.mask
    u, v = velocity(omega_hat[None], op)
    omega_hat *= config.initial_max_velocity / torch.sqrt(u**2 + v**2).max()
    return omega_hat


def sample_reynolds(
    n_runs: int,
    seed: int | np.random.Generator = 0,
    low: float = 500.0,
    high: float = 1500.0,
    *,
    random_initial: bool = False,
) -> dict[str, np.ndarray]:
    """Draw benchmark Reynolds numbers ``Re ~ U(low, high)``, by default ``U(500, 1500)``.

    Parameters
    ----------
    n_runs : int
    seed : int or Generator
    low, high : float
    random_initial : bool
        Also draw one initial-condition seed per run (``initial_seed``, distinct
        integers in ``[0, 2**31)``), so that every run starts from its own random
        field; by default all runs share the config's initial field.

    Returns
    -------
    dict
        ``{"Re": (n_runs,)}`` (and ``"initial_seed": (n_runs,)`` with
        ``random_initial``), ready for ``simulate(**draws, config=config)``.

    Examples
    --------
    >>> re = sample_reynolds(4, seed=0)["Re"]
    >>> re.shape, bool(((re >= 500) & (re < 1500)).all())
    ((4,), True)
    >>> sorted(sample_reynolds(3, seed=0, random_initial=True))
    ['Re', 'initial_seed']
    """
    if not is_int(n_runs) or n_runs < 1:
        raise ConfigError(f"n_runs must be an integer >= 1, got {n_runs!r}")
    if not (is_real(low) and is_real(high) and 0 < low < high):
        raise ConfigError(f"low and high must satisfy 0 < low < high, got {low!r} and {high!r}")
    if not isinstance(random_initial, bool):
        raise ConfigError(f"random_initial must be a bool, got {random_initial!r}")
    rng = np.random.default_rng(seed)
    draws = {"Re": rng.uniform(low, high, n_runs)}
    if random_initial:
        draws["initial_seed"] = rng.choice(2**31, size=n_runs, replace=False)
    return draws
