"""Writes to a tracking store that may fail: a run never dies of its tracking.

The run folder is the source of truth; the tracking store mirrors it. Any write that fails -- a server down, a sqlite
store locked, read-only or full, any MLflow error -- is held here, in order, with a one-line warning, and the run goes
on. Held writes are kept on disk (`outbox.json` in the run folder, written by the commit protocol: tmp + fsync +
rename; removed once empty) and sent, in order, by the next write that finds the store answering again (tried at most
every `retry_s` while it does not, so an outage costs one failed attempt, not one per write), at the end of the run,
or by `svgap sync` / `svgap run --resume` after the driver is gone. A replayed write is the same write (a metric keeps
its timestamp: MLflow stores it once), so nothing is logged twice. A write the store refuses as invalid while it
answers is never going to succeed: it is set aside in the file's `refused` list with a warning, not retried.

Entries are plain JSON (an `op` and its fields); mirror.py, the only MLflow writer, applies them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from orchestrator.store.files import atomic_write

FILE = "outbox.json"
Entry = dict


class Outbox:
    def __init__(self, apply: Callable[[Entry], object], answers: Callable[[], bool], warn: Callable[[str], None],
                 where: str, refused: Callable[[BaseException], bool] = lambda e: False,
                 retry_s: float = 10.0) -> None:
        """apply(entry): the write itself; answers(): a short probe (an http server's /health), True when the store
        may take a write; refused(error): the store answered and said no (the write is invalid, retrying is futile);
        where: the store, as shown to the user."""
        self.apply, self.answers, self.warn, self.where = apply, answers, warn, where
        self.refused, self.retry_s = refused, retry_s
        self.held: list[Entry] = []
        self.set_aside: list[Entry] = []
        self.path: Path | None = None
        self.down_since: float | None = None
        self.last_try = 0.0
        self.outages = 0
        self.sent_late = 0

    def keep_in(self, folder: Path) -> None:
        """From now on held writes are kept in FOLDER/outbox.json (the run folder, once it exists)."""
        self.path = Path(folder) / FILE
        self._save()

    def send(self, entry: Entry) -> None:
        if self.held and not self.flush():
            self._hold(entry)
            return
        try:
            self.apply(entry)
        except Exception as e:  # noqa: BLE001 - every tracking failure is held, never raised into the run
            self._failed(entry, e)

    def flush(self, force: bool = False) -> bool:
        """Send what is held if the store takes it; True when nothing is held any more. Without `force`, tried at
        most every retry_s while the store keeps failing."""
        if not self.held:
            return True
        if not force and time.monotonic() - self.last_try < self.retry_s:
            return False
        self.last_try = time.monotonic()
        if not self.answers():
            return False
        n = len(self.held)
        while self.held:
            try:
                self.apply(self.held[0])
            except Exception as e:  # noqa: BLE001
                if self.refused(e):
                    self._refuse(self.held.pop(0), e)
                    continue
                self._save()
                return False
            self.held.pop(0)
            self.sent_late += 1
        self._save()
        took = time.monotonic() - (self.down_since or time.monotonic())
        self.warn(f"tracking store {self.where} answers again after {took:.0f}s: sent the {n} write(s) held "
                  f"while it failed")
        self.down_since = None
        return True

    def drain(self, wait_s: float, every_s: float = 2.0) -> int:
        """At the end of a run: keep trying for up to wait_s; returns how many writes are still held."""
        deadline = time.monotonic() + wait_s
        while not self.flush(force=True) and time.monotonic() < deadline:
            time.sleep(every_s)
        return len(self.held)

    def _failed(self, entry: Entry, err: BaseException) -> None:
        if self.refused(err):
            self._refuse(entry, err)
            return
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.outages += 1
            self.warn(f"tracking store {self.where} failed ({entry.get('what', entry['op'])}: {_line(err)}); the "
                      f"run goes on, the write is kept in the run folder ({FILE}) and sent when the store takes "
                      f"writes again")
        self.last_try = time.monotonic()
        self._hold(entry)

    def _hold(self, entry: Entry) -> None:
        self.held.append(entry)
        self._save()

    def _refuse(self, entry: Entry, err: BaseException) -> None:
        self.set_aside.append({**entry, "error": _line(err)})
        self._save()
        self.warn(f"tracking store {self.where} refused {entry.get('what', entry['op'])} ({_line(err)}); kept in "
                  f"the run folder ({FILE}, refused), not sent again")

    def _save(self) -> None:
        """The commit protocol for the outbox: the whole list replaced atomically; removed once nothing is kept."""
        if self.path is None:
            return
        try:
            if self.held or self.set_aside:
                atomic_write(self.path, json.dumps({"held": self.held, "refused": self.set_aside}))
            else:
                self.path.unlink(missing_ok=True)
        except OSError as e:  # the run folder's disk is full too: the writes stay held in memory
            self.warn(f"cannot keep the tracking outbox in {self.path} ({e.strerror or type(e).__name__}); "
                      f"{len(self.held)} write(s) held in memory only")
            self.path = None


def read(folder: Path) -> list[Entry]:
    """The writes a driver left held in FOLDER/outbox.json (empty when there is none or it is unreadable)."""
    path = Path(folder) / FILE
    try:
        return list(json.loads(path.read_text()).get("held") or [])
    except (OSError, ValueError, AttributeError):
        return []


def _line(err: BaseException) -> str:
    return f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[0][:160]
