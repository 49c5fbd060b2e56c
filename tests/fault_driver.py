"""`svgap` whose driver is killed with SIGKILL (as `kill -9`) at a named instant: the first svgap log record whose
message matches PATTERN (a stage boundary: "round 1: generated", "round 1: verified", "round 1: trained",
"staged weights/v002.npz", "committed round 1", ...). The kill happens in the driver's own thread at that line, so
the crash point is exact and repeatable; nothing is mocked (the process really dies, its Ray job ends with it).

    python tests/fault_driver.py PATTERN [svgap args...]       # exit: -9 when it fired, svgap's code otherwise

Used by tests/run/test_commit.py and benchmarks/faults.py.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys

# debug-level instants that name the commit protocol's steps (store/commit.py)
DEBUG_LOGGERS = ("orchestrator.store.commit",)


class KillAt(logging.Handler):
    def __init__(self, pattern: str) -> None:
        super().__init__(logging.DEBUG)
        self.pattern = re.compile(pattern)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if self.pattern.search(msg):
            sys.stderr.write(f"fault_driver: SIGKILL at {msg!r}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def arm(pattern: str) -> None:
    """Kill this process at the first log record matching `pattern` (usable in any driver script)."""
    logging.getLogger().addHandler(KillAt(pattern))
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)


def main() -> int:
    arm(sys.argv[1])
    from orchestrator.cli import main as svgap

    return svgap(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
