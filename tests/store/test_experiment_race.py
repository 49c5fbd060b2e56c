"""Drivers starting together on a fresh store race to create the experiment; every one of them gets it."""
from __future__ import annotations

import threading

from orchestrator.store.mirror import RunLogger


def test_eight_drivers_creating_one_experiment_at_once_all_start(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start, made, errors = threading.Barrier(8), [], []

    def driver(i: int) -> None:
        start.wait()
        try:
            made.append(RunLogger(tracking_uri, "raced", f"r{i}", {"i": i}))
        except Exception as e:  # noqa: BLE001 - collected: the assertion names it
            errors.append(repr(e))

    threads = [threading.Thread(target=driver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(made) == 8 and len({r.experiment_id for r in made}) == 1
