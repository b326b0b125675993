"""Progress bars for the dask computations of an assimilation and of a write.

:func:`progress` shows a tqdm bar over the dask tasks computed inside its block: the
assimilation windows (each a task, run inside :func:`xlevda.assimilate`) and the
chunks decoded and written by :func:`xlevda.write`.  Quiet when not interactive
(standard error is not a terminal and no Jupyter kernel runs) unless asked for.  It
sees computations on dask's local schedulers (threads, processes, synchronous), not on a
``dask.distributed`` cluster, which has its own dashboard.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from xlevda.errors import ConfigError

__all__ = ["interactive", "progress"]


@contextmanager
def progress(enabled: bool | None = None, desc: str = "xlevda") -> Iterator[None]:
    """Show a progress bar for each dask computation inside the block.

    Parameters
    ----------
    enabled : bool, optional
        ``True``: show; ``False``: quiet; ``None`` (default): show when interactive
        (:func:`interactive`).
    desc : str
        The bars' label.

    Examples
    --------
    >>> import dask.array as da
    >>> with progress(enabled=False):
    ...     int(da.ones(4, chunks=2).sum().compute())
    4
    """
    if enabled is None:
        enabled = interactive()
    if not isinstance(enabled, bool):
        raise ConfigError(f"enabled must be True, False or None, got {enabled!r}")
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc, tqdm_class=tqdm):
        yield


def interactive() -> bool:
    """Whether someone watches: standard error is a terminal, or a Jupyter kernel runs.

    Examples
    --------
    >>> isinstance(interactive(), bool)
    True
    """
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and getattr(get(), "kernel", None) is not None
