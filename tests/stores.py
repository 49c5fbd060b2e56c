"""Tracking stores for tests: the one place that spells a sqlite tracking URI (MLflow 3 refuses the file store;
`sqlite:///` followed by a path, absolute or relative to the working directory). The `tracking_uri` and `run_store`
fixtures (conftest.py) give a test a fresh store and a fresh run folder."""
from __future__ import annotations

from pathlib import Path


def sqlite_uri(path: str | Path) -> str:
    """The tracking URI of a sqlite store at `path` (created by MLflow on first use)."""
    return f"sqlite:///{path}"
