"""Waiting for a file lock with a bound (`wait_lock`), and the sqlite tracking store's lock (`locked`).

`wait_lock` never waits forever: it notes who holds the lock (`pid N on HOST`), says once whom it waits for, fails at
once when the holder it names is gone from this host (a stale lock: a process that holder forked still has it), and
fails after `timeout_s` naming the holder. The model cache's build lock waits through it.

One store, many runs: an exclusive file lock (store/files.py FileLock) around creating a sqlite tracking store.

MLflow creates a fresh sqlite store's tables with alembic migrations on first use; two processes doing that at once
both fail and leave the store half-migrated (`_alembic_tmp_*` tables), breaking every later run on it. The lock is
a small file beside the database (`.<name>.lock`), taken by every svgap process before it first opens the store,
so one creates the tables and the others find them made. Local file systems only (flock on NFS is emulated with
byte-range locks; the lock file is separate from the database, so sqlite's own locks are never touched).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Iterator

from orchestrator.errors import SvgapError
from orchestrator.store.files import FileLock, holder

log = logging.getLogger(__name__)


def me() -> str:
    """How a lock's holder is noted in its file: `pid N on HOST`."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def gone(who: str | None) -> bool:
    """The noted holder is a process of this host that is not running any more."""
    m = re.fullmatch(r"pid (\d+) on (\S+)", who or "")
    if not m or m.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return True
    except OSError:  # running, as another user
        return False
    return False


def wait_lock(path: Path, timeout_s: float, what: str) -> FileLock:
    """Take the lock at `path` for `what`, waiting at most timeout_s; SvgapError naming the holder otherwise."""
    lock = FileLock(path)
    deadline = time.monotonic() + timeout_s
    said = False
    while not lock.acquire(timeout_s=max(0.0, min(1.0, deadline - time.monotonic()))):
        who = holder(path) or "another process"
        if gone(who):
            raise SvgapError(f"{what}: the lock {path} is held, but its holder ({who}) is gone -- a process it "
                             f"started still holds it (a stale lock); end that process, or delete {path}")
        if time.monotonic() >= deadline:
            raise SvgapError(f"{what}: waited {timeout_s:g}s for the lock {path}, held by {who}; if that process "
                             f"hangs, end it (or raise the wait)")
        if not said:
            log.info(f"{what}: waiting for {path} (held by {who}; at most {timeout_s:g}s)")
            said = True
    lock.note(me())
    return lock


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, None for other stores and in-memory databases."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def lock_path(db: Path) -> Path:
    return db.parent / f".{db.name}.lock"


@contextlib.contextmanager
def locked(db: Path, timeout_s: float = 300.0) -> Iterator[None]:
    """Hold the store's lock (waiting at most timeout_s: another process may be migrating a large store)."""
    path = lock_path(db)
    lock = FileLock(path)
    try:
        got = lock.acquire(timeout_s)
    except OSError as e:
        if db.is_file():  # a store in a folder we may not write (read-only use): it exists, nothing to create
            yield
            return
        raise SvgapError(f"tracking store {db}: cannot create its lock file {path}: {e.strerror}") from None
    if not got:
        raise SvgapError(f"tracking store {db}: another process has held {path} for over {timeout_s:g}s")
    try:
        yield
    finally:
        lock.release()
