"""One writer per cache folder: an exclusive advisory lock (``fcntl.flock`` on ``<folder>/.lock``)
held while a folder of parts is being filled.

Two processes asked for the same pass of the same items (two notebooks, a rerun started while
the first is still going) would otherwise both compute the missing items and both store them.
With the lock the second one waits, then reads what the first stored and computes only what is
still missing: no item is computed or stored twice. A reader whose items are all stored takes
no lock (parts are written whole, then renamed), so it never waits for a writer that is filling
the same folder with other items. The lock goes away with the process, so a
killed run leaves nothing to clean up. Where ``fcntl`` does not exist (Windows) the lock is a
no-op and one writer per folder is the user's job.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


@contextmanager
def file_lock(lock_path: Path):
    """An exclusive ``fcntl.flock`` on ``lock_path`` (created if missing), held while the block
    runs; a no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def folder_lock(path: Path):
    """:func:`file_lock` on ``path/.lock`` (the folder made first); none where the folder or
    its lock file cannot be written (a read-only cache: nothing will be stored there)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        open(path / LOCK_NAME, "a").close()
    except OSError:
        yield
        return
    with file_lock(path / LOCK_NAME):
        yield
