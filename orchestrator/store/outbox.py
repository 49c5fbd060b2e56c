"""Writes to a tracking server that may go away: a run never dies of a tracking outage.

The run folder is the source of truth; the tracking store mirrors it. While the server does not answer, each write
is held here (in order) with a warning, the run goes on, and the held writes are sent the first time the server
answers again; whatever is still held when the run ends stays in the run folder for `svgap sync RUN_DIR`.
A write that fails while the server answers is a real error (bad value, permission) and is raised, not held.
"""
from __future__ import annotations

import time
from typing import Callable


class Outbox:
    def __init__(self, answers: Callable[[], bool], warn: Callable[[str], None], where: str) -> None:
        """answers(): a short probe, True when the server is up; where: the store, as shown to the user."""
        self.answers, self.warn, self.where = answers, warn, where
        self.held: list[tuple[str, Callable[[], object]]] = []
        self.down_since: float | None = None
        self.outages = 0
        self.sent_late = 0

    def send(self, what: str, write: Callable[[], object]) -> None:
        if self.held and not self.flush():
            self.held.append((what, write))
            return
        try:
            write()
        except Exception as e:  # noqa: BLE001 - decided by asking the server, below
            if self.answers():
                raise
            self._down(what, e)
            self.held.append((what, write))

    def flush(self) -> bool:
        """Send what is held if the server answers; True when nothing is held any more."""
        if not self.held:
            return True
        if not self.answers():
            return False
        n = len(self.held)
        while self.held:
            what, write = self.held[0]
            try:
                write()
            except Exception:  # noqa: BLE001
                if not self.answers():
                    return False
                raise
            self.held.pop(0)
            self.sent_late += 1
        took = time.monotonic() - (self.down_since or time.monotonic())
        self.warn(f"tracking store {self.where} answers again after {took:.0f}s: sent the {n} write(s) held "
                  f"while it was down")
        self.down_since = None
        return True

    def drain(self, wait_s: float, every_s: float = 2.0) -> int:
        """At the end of a run: keep trying for up to wait_s; returns how many writes are still held."""
        deadline = time.monotonic() + wait_s
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(every_s)
        return len(self.held)

    def _down(self, what: str, err: BaseException) -> None:
        self.down_since = time.monotonic()
        self.outages += 1
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        self.warn(f"tracking store {self.where} does not answer ({what}: {type(err).__name__}: {first}); the run "
                  f"goes on, its metrics are kept in the run folder and sent when the store answers again")
