"""The fault suite's cases beyond a killed driver: actors killed mid-stage, a worker node removed, the tracking
store failing (server stopped and restarted, sqlite locked), many runs and sweeps at once on one store."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

from benchmarks.fault_cases import ROOT, TESTS, Row, compare, finished, reference, run_id_of, tiny
from orchestrator.store import tracking
from stores import sqlite_uri


def _experiment(ctx, out: str, uri: str, **kw):
    """The lora reference config, run in this process (the suite's Ray) with test hooks."""
    from orchestrator import config
    from orchestrator.run.experiment import Experiment

    sets = tiny(ctx.dir / out)[1::2]
    return Experiment(config.load(None, sets), tracking_uri=uri, **kw).run()


def actors_killed(ctx) -> Row:
    """ray.kill of a generation actor while it samples, SIGKILL of the verification and training actors mid-call."""
    import ray

    from fault_helpers import KilledGenerationWorker, OOMTrainingWorker, OOMVerificationWorker, start_switch

    t0, row = time.monotonic(), Row("actors killed mid-stage (generation, verification, training)")
    ref = reference(ctx, "lora")
    switch = start_switch({"generation.sample": 1, "verification.verify": 1, "training.train.1": 1})
    try:
        res = _experiment(ctx, "actors", ctx.uri, worker_classes={
            "generation": KilledGenerationWorker, "verification": OOMVerificationWorker, "training": OOMTrainingWorker})
        row.faults = len(ray.get(switch.fired_faults.remote()))
    finally:
        ray.kill(switch)
    row.redone = 0  # only the lost shards were sent again
    row.note = f"shards sent again: {sum(r.counts.get('retried_shards', 0) for r in res.records)}"
    row.finished = int(finished(res.run_id, ctx.uri))
    compare(row, res.run_id, ctx.uri, ref)
    return row.done(t0)


def node_removed(ctx) -> Row:
    """tests/node_loss_run.py: a 3-node ray.cluster_utils.Cluster, a worker node removed mid-round 0; its metrics are
    compared with the same config run on the same kind of cluster without the removal."""
    t0, row = time.monotonic(), Row("Ray worker node removed mid-round")
    ref_out, ref_note = _node_run(ctx, "node-ref", "--keep")
    out, note = _node_run(ctx, "node")
    row.faults = len(out.get("removed", []))
    row.finished = int(bool(out.get("finished")))
    row.note = note or ref_note or f"actors replaced {sum(c.get('replaced_actors', 0) for c in out['counts'])}"
    if out.get("run_id") and ref_out.get("run_id"):
        ref = tracking.run_metrics(ref_out["run_id"], sqlite_uri(ctx.dir / "node-ref" / "mlflow.db"))
        compare(row, out["run_id"], sqlite_uri(ctx.dir / "node" / "mlflow.db"), ref)
        row.note += f"; {sum(map(len, ref.values()))} metric values compared"
    else:
        row.lost += 1  # nothing to compare with: the row cannot pass
    return row.done(t0)


def _node_run(ctx, name: str, *flags: str) -> tuple[dict, str]:
    """One node_loss_run.py process: its JSON line, and a note when it did not finish."""
    (ctx.dir / name).mkdir(exist_ok=True)
    proc = subprocess.run([sys.executable, str(TESTS / "node_loss_run.py"), str(ctx.model_dir), str(ctx.dir / name),
                           *flags], capture_output=True, text=True, timeout=900, cwd=ROOT, env=_env())
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if out.get("finished"):
        return out, ""
    return out, f"{name}: " + (out.get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1])[:200]


def _env() -> dict:
    import os

    return {**os.environ, "PYTHONPATH": f"{ROOT}:{TESTS}"}


def server_restarted(ctx) -> Row:
    """`mlflow server` stopped after round 0 (round 1 runs without it) and started again after round 1."""
    from test_tracking_outage import free_port, start_server, stop_server

    t0, row = time.monotonic(), Row("MLflow server stopped and restarted mid-run")
    ref = reference(ctx, "lora")
    folder = ctx.dir / "server"
    folder.mkdir(exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = [start_server(folder, port)]

    def on_round(record) -> None:
        if record.round == 0:
            stop_server(server[0])
            row.faults += 1
        elif record.round == 1:
            server[0] = start_server(folder, port)

    try:
        res = _experiment(ctx, "server", uri, on_round=on_round)
        row.finished = int(finished(res.run_id, uri))
        compare(row, res.run_id, uri, ref)
    finally:
        stop_server(server[0])
    return row.done(t0)


def sqlite_locked(ctx) -> Row:
    """Another connection holds an EXCLUSIVE transaction on the sqlite store during round 1 (root is stopped too)."""
    from test_tracking_failures import Locked

    t0, row = time.monotonic(), Row("sqlite store unwritable mid-run (locked)")
    ref = reference(ctx, "lora")
    db = ctx.dir / "locked.db"
    uri = f"sqlite:///{db}"
    tracking.client(uri)  # the store exists before it is locked
    lock = Locked(db)

    def on_round(record) -> None:
        if record.round == 0:
            lock.take()
            row.faults += 1
        elif record.round == 1:
            lock.release()

    try:
        res = _experiment(ctx, "locked", uri, on_round=on_round)
    finally:
        lock.release()
    row.finished = int(finished(res.run_id, uri))
    compare(row, res.run_id, uri, ref)
    return row.done(t0)


def many_runs(ctx, n: int, server: bool) -> Row:
    """n `svgap run` drivers started at once on one fresh store (a sqlite file, or one `mlflow server`)."""
    t0, row = time.monotonic(), Row(f"{n} runs at once on one {'server' if server else 'sqlite store'}", runs=n)
    ref = reference(ctx, "lora")
    folder = ctx.dir / f"many-{'server' if server else 'sqlite'}"
    folder.mkdir(exist_ok=True)
    proc = None
    if server:
        from test_tracking_outage import free_port, start_server, stop_server

        port = free_port()
        uri, proc = f"http://127.0.0.1:{port}", start_server(folder, port)
    else:
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", "--tracking-uri", uri,
                                   "--address", ctx.address, *tiny(folder / "runs")], cwd=ROOT, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(n)]
        outs = [p.communicate(timeout=1800)[0] for p in procs]
        for p, text in zip(procs, outs):
            run_id = run_id_of(text)
            if p.returncode == 0 and run_id:
                row.finished += int(finished(run_id, uri))
                compare(row, run_id, uri, ref)
            else:
                row.note = f"exit {p.returncode}: {text.strip().splitlines()[-1][:160] if text.strip() else ''}"
    finally:
        if proc is not None:
            stop_server(proc)
    return row.done(t0)


def sweeps(ctx, n: int = 3) -> Row:
    """n `svgap sweep` studies (2 trials each) at once on one sqlite store."""
    t0, row = time.monotonic(), Row(f"{n} sweeps at once on one sqlite store", runs=n)
    folder = ctx.dir / "sweeps"
    folder.mkdir(exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "sweep", "--grid", "generation.n=2,4",
                               "--tracking-uri", uri, "--address", ctx.address, "--experiment", f"sweep{i}",
                               "--max-concurrent", "1", *tiny(folder / f"runs{i}", "rounds=1")], cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(n)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    for i, (p, text) in enumerate(zip(procs, outs)):
        m = re.search(r"parent MLflow run (\w{32})", text)
        children = tracking.child_runs(m.group(1), uri) if m else []
        good = p.returncode == 0 and len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
        row.finished += int(good)
        for c in children:
            for name in tracking.run_metrics(c.info.run_id, uri):
                steps = [x.step for x in tracking.client(uri).get_metric_history(c.info.run_id, name)]
                row.duplicates += len(steps) - len(set(steps))
        if not good:
            row.note = f"sweep {i}: exit {p.returncode}: {text.strip().splitlines()[-1][:140] if text.strip() else ''}"
    return row.done(t0)


def _path() -> None:
    for p in (str(TESTS), str(TESTS / "store"), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)


_path()
