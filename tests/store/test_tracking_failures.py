"""Tracking never kills a run (issue 23 item 2): a real sqlite store made unwritable mid-run -- another connection holds
an EXCLUSIVE transaction on it, which stops root as much as anyone (chmod would not) -- makes the round's writes fail
after MLflow's 20 s busy wait. The run goes on with one warning, keeps the writes in its folder's outbox.json, and
sends them once the store takes writes again: every metric at every step exactly once, the outbox then gone."""
from __future__ import annotations

import sqlite3

import pytest

from orchestrator import config
from orchestrator.run.experiment import Experiment
from orchestrator.store import outbox, tracking
from orchestrator.store.records import ROUND_METRICS
from stores import sqlite_uri


class Locked:
    """An EXCLUSIVE transaction on the store from a second connection: every other writer gets 'database is locked'."""

    def __init__(self, db) -> None:
        self.db, self.con, self.held_outbox = db, None, None

    def take(self) -> None:
        self.con = sqlite3.connect(self.db, isolation_level=None, timeout=30)
        self.con.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if self.con is not None:
            self.con.execute("ROLLBACK")
            self.con.close()
            self.con = None


@pytest.mark.slow
def test_locked_sqlite_store_mid_run_holds_writes_and_replays_them_once(local_ray, base_model_dir, tmp_path, said):
    db = tmp_path / "mlflow.db"
    uri = sqlite_uri(db)
    cfg = config.load(None, ["workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2",
                             "rounds=2", "training.epochs=1", f"tracking.out_dir={tmp_path / 'runs'}",
                             f"model.path={base_model_dir}", "fit.online=false"])
    lock = Locked(db)
    runs: list = []

    def on_round(record) -> None:
        if record.round == 0:
            lock.take()  # round 1's writes fail
        elif record.round == 1:
            runs.append(next((tmp_path / "runs").iterdir()))
            lock.held_outbox = outbox.read(runs[0])  # what round 1 could not send, on disk
            lock.release()

    try:
        res = Experiment(cfg, tracking_uri=uri, on_round=on_round).run()
    finally:
        lock.release()
    text = "\n".join(said)
    assert "failed (metrics of step 1: MlflowException" in text and "database is locked" in text, text[-3000:]
    assert "answers again" in text, text[-3000:]
    assert any(e["op"] == "metrics" and e["step"] == 1 for e in lock.held_outbox), lock.held_outbox
    client = tracking.client(uri)
    for name in ROUND_METRICS:
        steps = [m.step for m in client.get_metric_history(res.run_id, name)]
        assert sorted(steps) == [0, 1, 2], (name, steps)  # none lost, none twice
    logged = tracking.run_metrics(res.run_id, uri)
    for rec in res.records:
        assert logged["U_s"][rec.round] == rec.metrics["U_s"]
    assert tracking.get_run(res.run_id, uri).info.status == "FINISHED"
    assert {f"picks/round_{t:03d}.jsonl" for t in range(3)} <= set(tracking.artifact_paths(res.run_id, uri=uri))
    assert not (res.out_dir / outbox.FILE).exists()


def test_sync_replays_what_a_dead_driver_left_in_its_outbox_once(tmp_path, base_model_dir):
    """A driver killed while writes were held leaves outbox.json; `svgap sync` sends its tag and artifact, takes the
    metrics from the round records (the one that arrived is not sent twice), and removes the file."""
    import json
    import time

    from orchestrator.store import mirror
    from orchestrator.store.run_store import RunFiles
    from orchestrator.store.sync import sync

    uri = sqlite_uri(tmp_path / "mlflow.db")
    cfg = config.load(None, ["rounds=2", f"tracking.out_dir={tmp_path / 'runs'}", f"model.path={base_model_dir}"])
    logger = mirror.RunLogger(uri, "svgap", None, {})
    files = RunFiles(tmp_path / "runs" / logger.run_id)
    files.prepare(config.dump(cfg))
    (files.root / "rounds" / "round_000.json").write_text(json.dumps(
        {"round": 0, "version": 0, "metrics": {"U_s": 1.5, "G": 0.25}, "timings": {}, "counts": {}, "train": {}}))
    files.state(0, 1, logger.run_id)
    ts = int(time.time() * 1000)
    logger.log_metrics({"U_s": 1.5}, step=0)  # arrived before the store failed
    held = [{"op": "tag", "what": "tag svgap.note", "key": "svgap.note", "value": "held"},
            {"op": "dict", "what": "placement.json", "data": {"a": 1}, "file": "placement.json"},
            {"op": "metrics", "what": "metrics of step 0", "step": 0, "ts": ts, "metrics": {"U_s": 1.5, "G": 0.25}}]
    (files.root / outbox.FILE).write_text(json.dumps({"held": held, "refused": []}))
    sync(files.root, uri)
    run = tracking.get_run(logger.run_id, uri)
    assert run.data.tags["svgap.note"] == "held"
    assert "placement.json" in tracking.artifact_paths(logger.run_id, uri=uri)
    client = tracking.client(uri)
    for name, value in (("U_s", 1.5), ("G", 0.25)):
        assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, name)] == [(0, value)], name
    assert not (files.root / outbox.FILE).exists()
