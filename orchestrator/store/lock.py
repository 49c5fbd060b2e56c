"""One store, many runs: an exclusive file lock (store/files.py FileLock) around creating a sqlite tracking store.

MLflow creates a fresh sqlite store's tables with alembic migrations on first use; two processes doing that at once
both fail and leave the store half-migrated (`_alembic_tmp_*` tables), breaking every later run on it. The lock is
a small file beside the database (`.<name>.lock`), taken by every svgap process before it first opens the store,
so one creates the tables and the others find them made. Local file systems only (flock on NFS is emulated with
byte-range locks; the lock file is separate from the database, so sqlite's own locks are never touched).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from orchestrator.errors import SvgapError
from orchestrator.store.files import FileLock


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
