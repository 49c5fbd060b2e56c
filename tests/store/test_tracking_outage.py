"""A tracking outage does not kill a run: a real `mlflow server` (127.0.0.1, its own port, sqlite backend) is stopped
after round 0 and started again after round 1; the run goes on, warns, and every round ends up in MLflow once.
Then `svgap sync` pushes the same run folder to a fresh store (the same metrics) and, run against the server again,
sends nothing (no step twice)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import ray  # noqa: F401 - a hard dependency: a broken install fails here instead of skipping

from orchestrator import config

from orchestrator.store import tracking
from orchestrator.run.experiment import Experiment
from orchestrator.store.records import ROUND_METRICS
from orchestrator.store.sync import sync
from stores import sqlite_uri

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, port: int, wait_s: float = 240.0) -> subprocess.Popen:
    """`mlflow server` in its own session (so stopping it ends its uvicorn workers too); waits for /health."""
    log = open(folder / f"server-{time.time():.0f}.log", "w")
    proc = subprocess.Popen([MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", sqlite_uri(folder / 'server.db')],
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    stop_server(proc)
    pytest.fail(f"mlflow server did not answer within {wait_s:g}s: {log.name}")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def same(a: dict, b: dict) -> bool:
    """{metric: {step: value}} equal, NaN equal to NaN."""
    import math

    return a.keys() == b.keys() and all(
        a[k].keys() == b[k].keys() and all(a[k][s] == b[k][s] or (math.isnan(a[k][s]) and math.isnan(b[k][s]))
                                           for s in a[k]) for k in a)


@pytest.mark.slow
def test_server_stopped_for_a_round_and_restarted(local_ray, base_model_dir, tmp_path, said):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = [start_server(tmp_path, port)]
    cfg = config.load(None, ["workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2",
                             "rounds=3", "training.epochs=1", f"tracking.out_dir={tmp_path / 'runs'}",
                             f"model.path={base_model_dir}", "fit.min_rounds=4"])

    def on_round(record) -> None:
        if record.round == 0:
            stop_server(server[0])  # round 1 runs with no server at all
        elif record.round == 1:
            server[0] = start_server(tmp_path, port)

    try:
        res = Experiment(cfg, tracking_uri=uri, on_round=on_round).run()
        err = "\n".join(said)  # the warnings the driver logged
        assert "failed (" in err and "the run goes on" in err and "answers again" in err, err[-3000:]
        logged = tracking.run_metrics(res.run_id, uri)
        for name in ROUND_METRICS:
            assert sorted(logged[name]) == [0, 1, 2, 3], name
        assert sorted(logged.get("fit/decaying", {})) == [3]  # the online fit of round 3 (min_rounds 4) too
        hist = {m.step for m in tracking.client(uri).get_metric_history(res.run_id, "U_s")}
        assert len(tracking.client(uri).get_metric_history(res.run_id, "U_s")) == len(hist) == 4  # once each
        for t, rec in enumerate(res.records):
            assert logged["U_s"][t] == pytest.approx(rec.metrics["U_s"], rel=1e-12)
        assert tracking.get_run(res.run_id, uri).info.status == "FINISHED"
        arts = set(tracking.artifact_paths(res.run_id, uri=uri))
        assert {f"picks/round_{t:03d}.jsonl" for t in range(4)} <= arts, arts

        # svgap sync: the folder alone gives a fresh store the same metrics; against the server, nothing is new
        copy_uri = sqlite_uri(tmp_path / 'copy.db')
        copied = sync(res.out_dir, copy_uri)
        assert copied.created and copied.finished and copied.rounds == [0, 1, 2, 3]
        assert same(tracking.run_metrics(copied.run_id, copy_uri), logged)
        again = sync(res.out_dir, uri)
        assert not again.created and again.metrics_sent == 0 and again.artifacts_sent == []
        assert again.metrics_present == sum(len(v) for v in logged.values())
    finally:
        stop_server(server[0])


def test_sync_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from orchestrator.cli import main

    (tmp_path / "norun").mkdir()
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text(config.dump(config.load()))
    cases = [(tmp_path / "missing", "is not a folder"), (tmp_path / "norun", "is not a run folder"),
             (started, "has no finished round yet")]
    for folder, words in cases:
        assert main(["sync", str(folder), "--tracking-uri", sqlite_uri(tmp_path / 'm.db')]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "m.db").exists()  # nothing written to the store


def test_outbox_holds_every_failure_in_order_on_disk_and_sets_refused_writes_aside(tmp_path):
    """The rule under RunLogger, without a store: any failing write is held (one warning per outage), kept on disk in
    order, later writes queue behind it without another attempt until retry_s has passed, all go out in order once
    the store takes them (the file is then removed); a write the store refuses as invalid is set aside in the file,
    with a warning, and never raised into the run."""
    import json

    from orchestrator.store import outbox
    from orchestrator.store.outbox import Outbox

    class Refused(Exception):
        error_code = "INVALID_PARAMETER_VALUE"

    up, sent, warned, tries = [True], [], [], [0]

    def apply(e):
        tries[0] += 1
        if not up[0]:
            raise OSError("database or disk is full")
        if e["x"] == "bad":
            raise Refused("invalid metric")
        sent.append(e["x"])

    box = Outbox(apply, lambda: True, warned.append, "sqlite:///m.db",
                 refused=lambda e: getattr(e, "error_code", "") == "INVALID_PARAMETER_VALUE", retry_s=3600)
    box.keep_in(tmp_path)
    box.send({"op": "tag", "x": "a"})
    assert not (tmp_path / outbox.FILE).exists()
    up[0] = False
    for x in "bcd":
        box.send({"op": "tag", "x": x})
    assert sent == ["a"] and tries[0] == 2  # one failed attempt, then queued without trying (retry_s)
    assert [e["x"] for e in outbox.read(tmp_path)] == ["b", "c", "d"]
    assert len(warned) == 1 and "failed (tag: OSError: database or disk is full)" in warned[0], warned
    assert box.drain(0.0) == 3
    up[0] = True
    box.send({"op": "tag", "x": "bad"})
    assert box.drain(0.0) == 0
    assert sent == ["a", "b", "c", "d"] and not box.held and "answers again" in warned[-1]
    kept = json.loads((tmp_path / outbox.FILE).read_text())
    assert kept["held"] == [] and [e["x"] for e in kept["refused"]] == ["bad"]
    assert "refused" in warned[-1] or "refused" in warned[-2]
