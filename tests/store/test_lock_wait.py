"""Every lock wait is bounded (issue 23 item 4): the model cache's build lock gives up after its timeout naming the
holder (pid, host), and at once when the holder it names is gone (a stale lock kept by a process it forked). Real
processes hold the locks; the test ends them by pid."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.errors import SvgapError
from orchestrator.store.files import holder
from orchestrator.store.lock import wait_lock
from waits import wait_for
from workloads.arithmetic.cache import cached_build, recipe_hash

ROOT = Path(__file__).resolve().parents[2]
# take the lock as svgap does; with "fork", hand it to a child that keeps it and let the holder itself exit
HOLD = """
import os, sys, time
from orchestrator.store.lock import wait_lock
lock = wait_lock(__import__("pathlib").Path(sys.argv[1]), 5, "test")
if sys.argv[2] == "fork":
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    os._exit(0)
print(os.getpid(), flush=True)
time.sleep(120)
"""


def _hold(path: Path, how: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), how], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    pid = int(proc.stdout.readline())  # the process that keeps the lock
    return proc, pid


def _end(proc: subprocess.Popen, pid: int) -> None:
    for p in {proc.pid, pid}:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def _model_lock(cache: Path) -> Path:
    (cache / "models").mkdir(parents=True)
    return cache / "models" / f".arithmetic-{recipe_hash({'x': 1})}.lock"


def test_a_busy_cache_lock_times_out_naming_its_holder(tmp_path, monkeypatch, said):
    lock = _model_lock(tmp_path)
    proc, pid = _hold(lock, "hold")
    try:
        assert holder(lock) == f"pid {pid} on {socket.gethostname()}"
        monkeypatch.setenv("SVGAP_CACHE_LOCK_TIMEOUT_S", "1.5")
        t0 = time.monotonic()
        with pytest.raises(SvgapError) as e:
            cached_build(tmp_path, "arithmetic", {"x": 1}, lambda out: {})
        assert time.monotonic() - t0 < 30
        msg = str(e.value)
        assert f"held by pid {pid} on {socket.gethostname()}" in msg and "waited 1.5s" in msg, msg
        assert any("waiting for" in m and f"pid {pid}" in m for m in said), said  # said while it waited
    finally:
        _end(proc, pid)


def test_a_lock_whose_holder_is_gone_is_named_stale_at_once(tmp_path, monkeypatch):
    """The holder forked a child (torch workers do) and died: the child keeps the flock. No waiting it out."""
    lock = _model_lock(tmp_path)
    proc, child = _hold(lock, "fork")
    try:
        proc.wait(timeout=30)
        wait_for(lambda: holder(lock), 30, "the forked child to keep the lock")
        monkeypatch.setenv("SVGAP_CACHE_LOCK_TIMEOUT_S", "600")
        t0 = time.monotonic()
        with pytest.raises(SvgapError, match=rf"holder \(pid {proc.pid} on .*\) is gone .*stale lock"):
            cached_build(tmp_path, "arithmetic", {"x": 1}, lambda out: {})
        assert time.monotonic() - t0 < 60  # not the 600 s timeout
    finally:
        _end(proc, child)


def test_the_lock_is_taken_once_free_and_notes_its_holder(tmp_path):
    lock = wait_lock(tmp_path / ".lock", 1, "test")
    try:
        assert holder(tmp_path / ".lock") == f"pid {os.getpid()} on {socket.gethostname()}"
    finally:
        lock.release()
    assert holder(tmp_path / ".lock") is None


def test_a_bad_timeout_value_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SVGAP_CACHE_LOCK_TIMEOUT_S", "soon")
    with pytest.raises(SvgapError, match="SVGAP_CACHE_LOCK_TIMEOUT_S='soon': expected a number"):
        cached_build(tmp_path, "arithmetic", {"x": 1}, lambda out: {})
