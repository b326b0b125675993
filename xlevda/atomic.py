"""Write a file or directory under a temporary name, then rename it: all or nothing.

:func:`replace_when_done` gives a temporary path next to the final one (same
directory, so the rename stays on one file system).  The caller writes there; when
it returns, the temporary file or directory is flushed to disk and renamed onto the
final name, replacing what was there.  If the write raises, or the process is
killed, nothing ever appears under the final name: an interrupted write leaves at
most a hidden ``.<name>.tmp-<pid>-<random>`` next to it (removed on an exception;
after a kill it remains, and its name says what it was).  No xarray, no torch.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replace_when_done"]


def _fsync(path: Path) -> None:
    """Flush one file or directory entry to disk (where the system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. directories on Windows: nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file and directory of a directory tree, to disk."""
    _fsync(path)
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            for name in files + dirs:
                _fsync(Path(root, name))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _swap(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a directory (or a file of the other kind) there is moved
    aside first and removed after, so ``final`` never holds a mix of old and new."""
    if final.is_dir() and not final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


@contextmanager
def replace_when_done(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path to write to; renamed onto ``path`` when the block completes.

    Parameters
    ----------
    path : path-like
        The final file or directory; its directory must exist.

    Yields
    ------
    Path
        ``<dir>/.<name>.tmp-<pid>-<random>``, not yet existing.

    Raises
    ------
    FileNotFoundError
        The directory of ``path`` does not exist.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     final = os.path.join(d, "a.txt")
    ...     with replace_when_done(final) as tmp:
    ...         _ = tmp.write_text("done")
    ...         os.path.exists(final)
    ...     open(final).read(), os.listdir(d)
    False
    ('done', ['a.txt'])
    """
    final = Path(path)
    parent = final.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"the directory {str(parent)!r} of {str(final)!r} does not exist")
    tmp = parent / f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        yield tmp
        if not (tmp.exists() or tmp.is_symlink()):
            raise FileNotFoundError(f"nothing was written to {str(tmp)!r} for {str(final)!r}")
        _fsync_tree(tmp)
        _swap(tmp, final)
        _fsync(parent)
    except BaseException:
        _remove(tmp)
        raise
