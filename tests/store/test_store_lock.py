"""One store, many runs: a fresh sqlite store opened by several processes at the same moment is created once, under
a file lock, and stays usable (no `_alembic_tmp_*` table left). Without the lock MLflow's migrations race (checked
by hand on this machine: 3 processes -> 2 failed, `_alembic_tmp_metrics` left behind)."""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray

from orchestrator.store import tracking
from stores import sqlite_uri

HERE = Path(__file__).resolve().parents[1]
ROOT = HERE.parent

# each process waits for the same start time, then opens the store and makes a run in it
OPEN_AT = """
import sys, time
start, uri = float(sys.argv[1]), sys.argv[2]
from orchestrator.store import mirror
from mlflow.tracking import MlflowClient  # imported before the start time: the race is on the store, not imports
while time.time() < start:
    time.sleep(0.005)
logger = mirror.RunLogger(uri, "race", None, {"who": sys.argv[3]})
logger.log_metrics({"x": 1.0}, step=0)
logger.end()
print("run", logger.run_id)
"""


def leftovers(db: Path) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("select name from sqlite_master where name like '_alembic_tmp%'")]


@pytest.mark.slow
def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path):
    db = tmp_path / "fresh.db"
    uri = sqlite_uri(db)
    start = time.time() + 8  # after every interpreter has imported MLflow (2 cores, loaded)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT, str(start), uri, str(i)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for i in range(3)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.startswith("run "), err[-2000:]
    assert leftovers(db) == []
    runs = tracking.client(uri).search_runs([tracking.client(uri).get_experiment_by_name("race").experiment_id])
    assert len(runs) == 3 and all(r.data.metrics == {"x": 1.0} for r in runs)


@pytest.mark.slow
def test_two_runs_started_at_once_on_a_fresh_store_both_finish(local_ray, base_model_dir, tmp_path):
    """Two real `svgap run` processes (joining the test's Ray, small pools so both fit its 2 CPUs) on one fresh
    sqlite store: both finish, both runs are in the store with all their rounds, and the store is usable after."""
    db = tmp_path / "mlflow.db"
    uri = sqlite_uri(db)
    address = ray.get_runtime_context().gcs_address
    small = ["resources.generation.actors=1", "resources.generation.cpus=0.3", "resources.verification.cpus=0.3",
             "resources.training.cpus=0.3", "resources.colocate_training=never"]
    args = ["run", "--address", address, "--tracking-uri", uri, "--set", "rounds=1", "--set", "generation.n=2",
            "--set", "workload.train_prompts=8", "--set", "workload.heldout_prompts=8", "--set",
            "training.epochs=1", "--set", f"model.path={base_model_dir}", "--set",
            f"tracking.out_dir={tmp_path / 'runs'}"]
    for s in small:
        args += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    ids = []
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, (out + err)[-3000:]
        ids.append(re.search(r"MLflow run id: (\w+)", out).group(1))
    assert len(set(ids)) == 2 and leftovers(db) == []
    for run_id in ids:
        assert sorted(tracking.run_metrics(run_id, uri)["U_s"]) == [0, 1]
        assert tracking.get_run(run_id, uri).info.status == "FINISHED"
