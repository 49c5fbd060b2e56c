"""A generation actor that really dies (SIGKILL, as Ray's OOM killer does) in its first sampling call of the whole
test -- a marker file (path in $SVGAP_TEST_DIE_ONCE) makes it once, so the retried trial's actor lives. Importable
by Ray workers through PYTHONPATH."""
from __future__ import annotations

import os
import signal
import time

from orchestrator.roles.generation import GenerationWorker


class DieOnceGenerationWorker(GenerationWorker):
    def sample(self, *args, **kwargs):
        marker = os.environ.get("SVGAP_TEST_DIE_ONCE")
        if marker:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # only the first caller dies
            except FileExistsError:
                fd = None
            if fd is not None:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)
        return super().sample(*args, **kwargs)
