"""routelib.cache.locks: the cache's folder lock and the adaptive state file's lock are one
``flock``; another process cannot take it while it is held, and a read-only cache needs none."""
from __future__ import annotations

import subprocess
import sys

import pytest

from routelib.cache import locks

fcntl = pytest.importorskip("fcntl")
TRY = ("import fcntl, sys\nwith open(sys.argv[1], 'a') as fh:\n"
       "    try:\n        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
       "    except BlockingIOError:\n        sys.exit(3)\n")


def held_elsewhere(lock_path) -> bool:
    """Whether another process fails to take the lock now."""
    return subprocess.run([sys.executable, "-c", TRY, str(lock_path)]).returncode == 3


def test_folder_lock_is_exclusive_across_processes_and_released(tmp_path):
    folder = tmp_path / "a" / "b"
    with locks.folder_lock(folder):
        assert (folder / locks.LOCK_NAME).exists()
        assert held_elsewhere(folder / locks.LOCK_NAME)
    assert not held_elsewhere(folder / locks.LOCK_NAME)


def test_file_lock_is_exclusive_and_released_on_error(tmp_path):
    lock = tmp_path / "state.json.lock"
    with pytest.raises(RuntimeError):
        with locks.file_lock(lock):
            assert held_elsewhere(lock)
            raise RuntimeError("inside")
    assert not held_elsewhere(lock)


def test_a_folder_whose_lock_file_cannot_be_opened_is_not_locked(tmp_path):
    """Where ``.lock`` cannot be opened for writing (here it is a folder; a read-only cache
    gives the same OSError) the block runs without a lock instead of failing."""
    (tmp_path / locks.LOCK_NAME).mkdir()
    ran = []
    with locks.folder_lock(tmp_path):
        ran.append(True)
    assert ran
