"""`svgap` whose driver is killed with SIGKILL (as `kill -9`) at a named instant: the first svgap log record whose
message matches PATTERN (a stage boundary: "round 1: generated", "round 1: verified", "round 1: trained",
"staged weights/v002.npz", "committed round 1", ...). The kill happens in the driver's own thread at that line, so
the crash point is exact and repeatable; nothing is mocked (the process really dies, its Ray job ends with it).

    python tests/fault_driver.py PATTERN [svgap args...]       # exit: -9 when it fired, svgap's code otherwise

With FAULT=fsize in the environment the driver is not killed at PATTERN: its file-size limit drops to 1 byte
(RLIMIT_FSIZE, what a full disk looks like to a writer: every write fails with EFBIG; Python ignores SIGXFSZ).

Used by tests/run/test_commit.py and benchmarks/faults.py.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import sys

# debug-level instants that name the commit protocol's steps (store/commit.py)
DEBUG_LOGGERS = ("orchestrator.store.commit", "orchestrator.run.update_refs")


class KillAt(logging.Handler):
    def __init__(self, pattern: str) -> None:
        super().__init__(logging.DEBUG)
        self.pattern: re.Pattern | None = re.compile(pattern)

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if self.pattern is None or not self.pattern.search(msg):
            return
        self.pattern = None  # fires once
        if os.environ.get("FAULT") == "fsize":
            import resource

            sys.stderr.write(f"fault_driver: disk full (RLIMIT_FSIZE 1 byte) at {msg!r}\n")
            resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
            return
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
