"""The one atomic write and the one file lock (store/files.py), with real files and real processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from orchestrator.store.files import FileLock, atomic_write, holder, replacing

HOLD = ("import sys, time; from orchestrator.store.files import FileLock; lock = FileLock(sys.argv[1]); "
        "lock.acquire(); lock.note('pid live'); print('held', flush=True); time.sleep(60)")


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    atomic_write(path, "old")
    atomic_write(path, b"new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_failed_write_leaves_the_old_version(tmp_path):
    path = tmp_path / "v001.npz"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_text("half of it")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["v001.npz"]


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path):
    path = tmp_path / ".lock"
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert live.stdout.readline().strip() == "held"
        assert holder(path) == "pid live"
        assert not FileLock(path).acquire(timeout_s=0.3)  # waits a little, then says no
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    assert holder(path) is None  # kill -9 released it
    lock = FileLock(path)
    assert lock.acquire(timeout_s=0) and lock.held
    lock.release()
    with FileLock(path):  # blocking use (the model cache)
        assert holder(path) == "pid live"  # held again; the note is the last holder's


def test_holder_of_no_lock_file(tmp_path):
    assert holder(tmp_path / ".lock") is None
