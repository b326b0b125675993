"""Surrogates shipped with xlevda, trained at CPU scale by the scripts in ``examples/``.

Each file records the SHA-256 checksum of its content (added to the files as trained,
without changing a weight), verified whenever it is loaded.
"""

from __future__ import annotations

from importlib import resources

from xlevda.errors import ConfigError
from xlevda.ldnet import LDNet

__all__ = ["available", "load_pretrained"]


def available() -> list[str]:
    """Names of the shipped surrogates.

    Examples
    --------
    >>> "tsunami" in available()
    True
    """
    return sorted(
        f.name.removesuffix(".pt")
        for f in resources.files(__name__).iterdir()
        if f.name.endswith(".pt")
    )


def load_pretrained(name: str, *, map_location: str = "cpu") -> LDNet:
    """Load a shipped surrogate by name, e.g. ``"tsunami"``.

    Examples
    --------
    >>> model = load_pretrained("tsunami")
    >>> model.schema.params
    ('src_lat', 'src_lon')
    """
    names = available()
    if name not in names:
        raise ConfigError(f"no pretrained surrogate named {name!r}; available: {names}")
    with resources.as_file(resources.files(__name__) / f"{name}.pt") as path:
        return LDNet.load(path, map_location=map_location)
