"""Tracking stores for tests: the one place that spells a sqlite tracking URI (MLflow 3 refuses the file store;
`sqlite:///` followed by a path, absolute or relative to the working directory). The `tracking_uri` and `run_store`
fixtures (conftest.py) give a test a fresh store and a fresh run folder."""
from __future__ import annotations

from pathlib import Path


def sqlite_uri(path: str | Path) -> str:
    """The tracking URI of a sqlite store at `path` (created by MLflow on first use)."""
    return f"sqlite:///{path}"


def assert_same_metrics(run_id: str, ref_id: str, uri: str) -> dict[str, dict[int, float]]:
    """A resumed (or faulted) run against an uninterrupted one of the same config and seeds: FINISHED, the same
    metrics at the same steps, none logged twice, identical values except wall-clock times. Returns its metrics."""
    import re

    from orchestrator.store import tracking

    timed = re.compile(r"^(time/|mem/|tokens_per_s$)")
    client = tracking.client(uri)
    resumed, plain = tracking.run_metrics(run_id, uri), tracking.run_metrics(ref_id, uri)
    assert tracking.get_run(run_id, uri).info.status == "FINISHED"
    assert set(resumed) == set(plain)
    for name in resumed:
        steps = [m.step for m in client.get_metric_history(run_id, name)]
        assert sorted(steps) == sorted(set(steps)), f"{name} logged twice at a step: {sorted(steps)}"
        assert sorted(steps) == sorted(plain[name]), name
        if not timed.match(name):
            assert resumed[name] == plain[name], name  # identical, not close: CPU float32, same seeds
    return resumed
