"""One writer per cache folder: an exclusive advisory lock (``fcntl.flock`` on ``<folder>/.lock``)
held while a folder of parts is being filled.

Two processes asked for the same pass of the same items (two notebooks, a rerun started while
the first is still going) would otherwise both compute the missing items and both store them.
With the lock the second one waits, then reads what the first stored and computes only what is
still missing: no item is computed or stored twice. The lock goes away with the process, so a
killed run leaves nothing to clean up. Where ``fcntl`` does not exist (Windows) the lock is a
no-op and one writer per folder is the user's job.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"


@contextmanager
def folder_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        fh = open(path / LOCK_NAME, "a")
    except OSError:  # a read-only cache: nothing will be written there, so no lock is needed
        yield
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
