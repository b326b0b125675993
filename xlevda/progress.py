"""Progress bars for the dask computations of an assimilation and of a write.

:func:`progress` shows a tqdm bar over the dask tasks computed inside its block: the
assimilation windows (each a task, run inside :func:`xlevda.assimilate`) and the
chunks decoded and written by :func:`xlevda.write`.  Quiet when not interactive
(standard error is not a terminal) unless asked for.  It sees computations on
dask's local schedulers (threads, processes, synchronous), not on a
``dask.distributed`` cluster, which has its own dashboard.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from xlevda.errors import ConfigError

__all__ = ["progress"]


@contextmanager
def progress(enabled: bool | None = None, desc: str = "xlevda") -> Iterator[None]:
    """Show a progress bar for each dask computation inside the block.

    Parameters
    ----------
    enabled : bool, optional
        ``True``: show; ``False``: quiet; ``None`` (default): show when standard
        error is a terminal.
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
        enabled = sys.stderr.isatty()
    if not isinstance(enabled, bool):
        raise ConfigError(f"enabled must be True, False or None, got {enabled!r}")
    if not enabled:
        yield
        return
    from tqdm.dask import TqdmCallback

    with TqdmCallback(desc=desc):
        yield
