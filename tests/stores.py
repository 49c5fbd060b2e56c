"""Tracking stores and run stores for tests: the one place that spells a sqlite tracking URI (MLflow 3 needs a
database store; `sqlite:///` + an absolute path is a file, `sqlite:////abs` on the command line alike)."""
from __future__ import annotations

from pathlib import Path


def sqlite_uri(path: str | Path) -> str:
    """The tracking URI of a sqlite store at `path` (created by MLflow on first use)."""
    return f"sqlite:///{path}"
