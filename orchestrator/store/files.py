"""The one atomic write and the one file lock of the package: every file a run, a study or the model cache keeps
goes through here, so a crash at any instant leaves the old version or the new one, never half of one.

atomic_write: write a temporary file beside the target (`NAME.tmp`), fsync it, os.replace it over the target, fsync
the folder (the rename itself survives a power cut). FileLock: an exclusive fcntl.flock on a small file beside what
it guards; the kernel releases it when the holder closes it or dies (kill -9 too), so a lock never outlives its
process. Local file systems only (on NFS flock is emulated with byte-range locks).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Iterator

TMP = ".tmp"  # a killed write leaves `NAME.tmp` (RunFiles.remove_partial removes `*.tmp*`)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's own entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: str | Path, tmp: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to (np.savez, a writer of its own); on success it
    replaces `path` atomically and durably, on failure it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = tmp or path.with_name(path.name + TMP)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` atomically: write new -> fsync -> os.replace -> fsync the folder."""
    path = Path(path)
    with replacing(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
    return path


class FileLock:
    """An exclusive flock on `path` (created with the user's umask), held until release() or the process's end."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, timeout_s: float | None = None) -> bool:
        """Take the lock: wait for it (timeout_s None), try once (0), or try until timeout_s has passed.
        True when held; False when another process holds it. OSError when the lock file cannot be made."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if timeout_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout_s
                while not _try(fd):
                    if time.monotonic() >= deadline:
                        os.close(fd)
                        return False
                    time.sleep(0.1)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def note(self, text: str) -> None:
        """Say who holds the lock in its file (`holder` reads it: e.g. `pid 123`)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(path: str | Path) -> str | None:
    """Who holds the lock at `path` (what its holder noted, or "another process"), None when nobody does."""
    path = Path(path)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if _try(fd):
            return None
        return os.read(fd, 4096).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)  # releases the probe's lock, if it took one
