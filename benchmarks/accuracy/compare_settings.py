"""Settings and method labels of the method comparison (``compare.py``).

Imported by ``compare.py`` and ``compare_report.py`` as a sibling module.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlevda.errors import ConfigError

__all__ = ["COLORS", "FLOOR", "LEVDA_EQUAL_K", "METHODS", "PRIOR", "Settings"]

PRIOR = "prior (no DA)"
LEVDA_EQUAL_K = "LEVDA K=40"
FLOOR = "surrogate, true source"
METHODS = ("LEVDA", "LD-EnSF", "LETKF", "EnSF", "4DEnVar", PRIOR, FLOOR, LEVDA_EQUAL_K)
COLORS = dict(zip(METHODS, ("C0", "C1", "C2", "C4", "C3", "0.5", "k", "C9"), strict=True))


@dataclass(frozen=True)
class Settings:
    """One benchmark configuration; :meth:`quick` is the small version.

    Attributes
    ----------
    seeds : tuple of int
        One truth case per seed (source, observation noise and ensembles).
    latent_members, full_members : int
        ``K`` of the latent methods and of the full-state methods.
    window : int
        Observation times per window (LEVDA and 4DEnVar).
    stride : int
        Grid stride of the main buoy network (5: 10x10 buoys, 100 km apart as in the paper).
    strides : tuple of int
        Strides of the LEVDA / 4DEnVar sweep.
    noise : float
        Observation noise-to-signal ratio.
    inflation : float
        Multiplicative inflation of LETKF and 4DEnVar (fixed a priori, not tuned).
    radius : float
        Localization radius of LETKF and 4DEnVar in grid cells (Gaspari-Cohn support).
    train_runs, encoder_epochs : int
        Simulated runs and epochs of the LD-EnSF encoder.
    ensf_steps : int
        Reverse-SDE steps of every EnSF / LD-EnSF analysis.
    repeats : int
        Timed runs of every method on the first case (the runtime is their median).
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    latent_members: int = 100
    full_members: int = 40
    window: int = 5
    stride: int = 5
    strides: tuple[int, ...] = (2, 5, 16, 24, 48)
    noise: float = 0.1
    inflation: float = 1.1
    radius: float = 2.0
    train_runs: int = 300
    encoder_epochs: int = 150
    ensf_steps: int = 100
    repeats: int = 2

    def __post_init__(self) -> None:
        ints = ("latent_members", "full_members", "window", "stride", "train_runs")
        for name in (*ints, "encoder_epochs", "ensf_steps", "repeats"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Settings.{name} must be an integer >= 1, got {value!r}")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ConfigError(f"Settings.seeds must be integers >= 0, got {self.seeds!r}")
        if not self.strides or self.stride not in self.strides:
            raise ConfigError(
                f"Settings.strides must include the main stride {self.stride}, got {self.strides}"
            )

    @classmethod
    def quick(cls) -> Settings:
        """One case, fewer encoder runs and epochs, two sweep strides, one repeat."""
        return cls(seeds=(0,), strides=(5, 16), train_runs=100, encoder_epochs=30, repeats=1)
