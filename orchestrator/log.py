"""How svgap says what it is doing: `logging` everywhere, configured here once per command.

Modules log through `logging.getLogger(__name__)`; nothing passes progress callbacks. `setup_logging` (called by
the CLI) puts one console handler on stderr -- rich's when stderr is a terminal, plain `svgap: ...` lines when it
is not, so that piped output and tests read the same words -- and, optionally, a JSON-lines file. A run writes its
own JSON log into its run folder (`RunLog`), and a sweep trial its time-stamped lines (`capture`). Every handler
here carries `Redact`: a message passes through orchestrator/redact.py before it reaches a console or a file.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from orchestrator import redact

OWN = ("orchestrator", "workloads")  # svgap's loggers; other libraries' records show from WARNING on
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RUN_LOG = "log.jsonl"  # in the run folder: <out_dir>/<run id>/log.jsonl
_MARK = "_svgap"  # handlers installed by setup_logging carry this attribute, so a second call replaces them


class Redact(logging.Filter):
    """No credential in any log line: the message (args merged in) and a traceback go through redact.text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a message whose arguments do not fit: shown as written, still masked
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact.text(logging.Formatter().formatException(record.exc_info))
        record._redacted = True
        return True


def _who(record: logging.LogRecord) -> str:
    return "svgap" if record.name.split(".")[0] in OWN else record.name


class PlainFormatter(logging.Formatter):
    """`svgap: message` (INFO), `svgap: warning: message`; another library's record names its logger instead."""

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        text = f"{_who(record)}: {level}{record.getMessage()}"
        if record.exc_text or record.exc_info:
            text += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return text


class StderrHandler(logging.Handler):
    """Writes to the *current* sys.stderr at each record (pytest's capsys, a redirected stream)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never fail the run
            self.handleError(record)


def console(level: int) -> logging.Handler:
    """The stderr handler at `level`: rich on a terminal, plain `svgap: ...` lines elsewhere; redacting."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False,
                                               rich_tracebacks=False, log_time_format="%H:%M:%S")
    else:
        handler = StderrHandler()
        handler.setFormatter(PlainFormatter())
    handler.setLevel(level)
    handler.addFilter(Redact())
    return handler


def _record_json(record: logging.LogRecord) -> dict:
    out = {"time": record.created, "level": record.levelname, "logger": record.name, "message": record.getMessage()}
    for key in ("round", "stage"):  # structured fields a caller adds with extra={...}
        if hasattr(record, key):
            out[key] = getattr(record, key)
    if record.exc_text:
        out["traceback"] = record.exc_text
    return out


class JsonLines(logging.Handler):
    """One JSON object per record. Without a path yet, records are held until `open` (a run folder that exists only
    once the MLflow run does), then written in order."""

    def __init__(self, path: Path | None = None, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.addFilter(Redact())
        self._held: list[dict] = []
        self._file: IO[str] | None = None
        self.path: Path | None = None
        self._io = threading.Lock()
        if path is not None:
            self.open(path)

    def open(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._io:
            self._file = self.path.open("a", encoding="utf-8")
            for row in self._held:
                self._file.write(json.dumps(row, default=str) + "\n")
            self._held.clear()
            self._file.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            row = _record_json(record)
            with self._io:
                if self._file is None:
                    self._held.append(row)
                else:
                    self._file.write(json.dumps(row, default=str) + "\n")
                    self._file.flush()
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def close(self) -> None:
        with self._io:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:  # a full disk: the lines it could not flush are lost, not the run's own error
                    pass
                self._file = None
        super().close()


class TimedLines(logging.Handler):
    """`HH:MM:SS.cc message` lines appended to a file (a sweep trial's log); a line is never worth a trial."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self.path = Path(path)
        self.addFilter(Redact())

    def emit(self, record: logging.LogRecord) -> None:
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
                f.write(f"{stamp}.{int(record.msecs / 10):02d} {level}{record.getMessage()}\n")
        except OSError:
            pass


@contextmanager
def capture(handler: logging.Handler, level: int = logging.INFO) -> Iterator[logging.Handler]:
    """`handler` on the root logger for the block, svgap's loggers let through at `level` at least (in a Ray worker
    or a library caller nobody configured them); removed and put back as they were afterwards."""
    root = logging.getLogger()
    before = {n: logging.getLogger(n).level for n in OWN}
    for n in OWN:
        if logging.getLogger(n).getEffectiveLevel() > level:
            logging.getLogger(n).setLevel(level)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        handler.close()
        for n, lvl in before.items():
            logging.getLogger(n).setLevel(lvl)


class RunLog:
    """One run's JSON log: its records from the start, written to `<run folder>/log.jsonl` once the folder exists
    (a resumed run appends). `close` when the run ends, however it ends."""

    def __init__(self) -> None:
        self.handler = JsonLines()
        self._scope = capture(self.handler)
        self._scope.__enter__()

    def open(self, folder: Path) -> None:
        self.handler.open(Path(folder) / RUN_LOG)

    def close(self) -> None:
        self._scope.__exit__(None, None, None)


def setup_logging(level: str | int = "INFO", quiet: bool = False, json_path: Path | str | None = None) -> None:
    """The console on stderr at `level` (WARNING and up when `quiet`), and a JSON-lines file at `json_path`.
    svgap's loggers record INFO at least whatever the console shows, so a run's JSON log keeps its progress."""
    lvl = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(lvl, int):
        from orchestrator.errors import SvgapError

        raise SvgapError(f"--log-level {level!r}: use one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(h)
        h.close()
    handlers = [console(max(lvl, logging.WARNING) if quiet else lvl)] + ([JsonLines(Path(json_path), min(lvl, logging.INFO))] if json_path else [])
    for h in handlers:
        setattr(h, _MARK, True)
        root.addHandler(h)
    root.setLevel(max(lvl, logging.WARNING))  # libraries: warnings and errors
    for n in OWN:
        logging.getLogger(n).setLevel(min(lvl, logging.INFO))
