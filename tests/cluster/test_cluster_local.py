"""Acceptance of issue 11 on one machine: `cluster/local.sh up --workers 2` (a real multi-node Ray cluster with token
auth and a real MLflow server), `svgap submit --follow` of a tiny experiment whose pools ask for the workers' custom
resources, the run in the MLflow server, the token refusals, `svgap jobs / logs / stop`, and `down` leaving no
process of its own. One cluster for the whole module (it takes the most time)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.cli import main

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SH = ROOT / "cluster" / "local.sh"
TINY = ["--set", "rounds=1", "--set", "workload.train_prompts=16", "--set", "workload.heldout_prompts=32",
        "--set", "generation.n=2", "--set", "training.epochs=1"]
# one generation actor (each actor's start is the slowest part of the job here): 3 actors on the 2 workers
SHAPED = ["--set", "resources.generation.actors=1", "--set", "resources.generation.custom={gen_node: 1}",
          "--set", "resources.training.custom={train_node: 1}"]
pytestmark = [pytest.mark.slow, pytest.mark.cluster]
STATE: dict = {}


def _base_env() -> dict:
    """This process's environment without any cluster, tracking server or token of the developer's shell."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SVGAP_CLUSTER"))}


def _marked(d: str) -> list[int]:
    """Processes of ours that carry the cluster's marker (what `down` must leave none of)."""
    mark = f"SVGAP_LOCAL_CLUSTER_MEMBER={d}".encode()
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if mark in open(f"/proc/{p}/environ", "rb").read().split(b"\0"):
                    state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(p))
            except OSError:
                pass
    return found


def _sh(cmd: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL_SH), cmd], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def cluster():
    d = tempfile.mkdtemp(prefix="svc", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**_base_env(), "SVGAP_CLUSTER_DIR": d}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", str(LOCAL_SH), "up", "--workers", "2"], capture_output=True, text=True,
                          timeout=400, env=env)
    STATE["up_s"] = time.perf_counter() - t0
    if proc.returncode != 0:
        logs = "".join(f"\n--- {p.name}: " + p.read_text()[-600:] for p in sorted(Path(d, "logs").glob("*.log")))
        _sh("down", env)
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"local.sh up failed: {proc.stderr[-1500:]}{logs}")
    exports = dict(re.fullmatch(r"export (\w+)=(.*)", line).groups() for line in proc.stdout.splitlines())
    yield {"dir": d, "env": {**env, **exports}, "exports": exports, "stdout": proc.stdout}
    if _marked(d):  # the down test failed or did not run: never leave a cluster behind
        _sh("down", env)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shell(cluster, monkeypatch, tmp_path):
    """This process's environment as after `eval "$(cluster/local.sh up)"` (for in-process svgap calls)."""
    for k in list(os.environ):
        if k.startswith(("RAY_", "MLFLOW_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token: only what the exports say
    for k, v in cluster["exports"].items():
        monkeypatch.setenv(k, v)
    return cluster


def _job_count(cluster) -> int:
    from ray.job_submission import JobSubmissionClient

    token = Path(cluster["exports"]["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    client = JobSubmissionClient(cluster["exports"]["RAY_ADDRESS"], headers={"Authorization": f"Bearer {token}"})
    return len(client.list_jobs())


def test_up_prints_only_exports_for_a_token_auth_cluster(cluster):
    ex = cluster["exports"]
    assert set(ex) == {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI",
                       "SVGAP_CLUSTER_DIR"}
    assert ex["RAY_AUTH_MODE"] == "token" and ex["RAY_ADDRESS"].startswith("http://127.0.0.1:")
    assert ex["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    status = _sh("status", cluster["env"], timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count(": running") == 4  # head, MLflow, 2 workers


def test_no_token_and_a_wrong_token_are_refused_and_nothing_is_submitted(shell, capsys, monkeypatch):
    before = _job_count(shell)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    monkeypatch.delenv("RAY_AUTH_MODE")
    assert main(["submit", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "requires token auth but no token was sent" in err, err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "0000")
    assert main(["submit", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rejected the auth token from RAY_AUTH_TOKEN" in err, err
    assert _job_count(shell) == before


def test_submit_follow_runs_the_experiment_on_the_shaped_cluster(cluster):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "submit", *TINY, *SHAPED, "--name", "accept",
                           "--follow"], capture_output=True, text=True, timeout=900, env=cluster["env"], cwd=ROOT)
    STATE["job_s"] = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    job_id = re.search(r"submitted job (\S+)", out).group(1)
    assert f"job {job_id} SUCCEEDED" in proc.stderr
    gen = re.search(r"placement generation: (.*)", out).group(1)
    train = re.search(r"placement training: (.*)", out).group(1)
    assert gen.count("gen_node=") == 1 and "train_node" not in gen, gen
    assert "train_node=" in train and "gen_node" not in train, train
    run_id = re.search(r"MLflow run id: (\w+)", out).group(1)
    STATE.update(job_id=job_id, run_id=run_id)
    from orchestrator.store import tracking

    metrics = tracking.run_metrics(run_id, cluster["exports"]["MLFLOW_TRACKING_URI"])
    assert set(metrics["U_s"]) == {0, 1} and set(metrics["G"]) == {0, 1}
    assert tracking.get_run(run_id, cluster["exports"]["MLFLOW_TRACKING_URI"]).info.status == "FINISHED"
    where = json.loads(tracking.artifact_text(run_id, "placement.json", cluster["exports"]["MLFLOW_TRACKING_URI"]))
    assert [r["custom"].get("gen_node") for r in where["generation"]] == [4.0]
    assert [r["custom"].get("train_node") for r in where["training"]] == [4.0]


def test_jobs_logs_and_stop(shell, capsys):
    if "job_id" not in STATE:
        pytest.skip("needs the submitted job of the previous test")
    assert main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert STATE["job_id"] in out and "SUCCEEDED" in out
    assert main(["logs", STATE["job_id"]]) == 0
    assert "round 1/1 done" in capsys.readouterr().out
    assert main(["logs", "no-such-job"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["submit", *TINY, "--name", "tostop"]) == 0
    job_id = re.search(r"submitted job (\S+)", capsys.readouterr().out).group(1)
    t0 = time.perf_counter()  # following is bounded: --timeout ends it (the job keeps running), exit 124
    assert main(["logs", job_id, "--follow", "--timeout", "3"]) == 124
    assert time.perf_counter() - t0 < 60
    assert f"stopped following {job_id} after 3s" in capsys.readouterr().err
    assert main(["stop", job_id]) == 0
    assert f"job {job_id} STOPPED" in capsys.readouterr().out


def test_down_leaves_no_process_of_its_own(cluster):
    d = cluster["dir"]
    assert _marked(d)
    t0 = time.perf_counter()
    proc = _sh("down", cluster["env"], timeout=120)
    STATE["down_s"] = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("unset ") and proc.stdout.count("\n") == 1
    assert _marked(d) == []
    assert not list(Path(d, "pids").glob("*.pid"))
    print(f"\nlocal cluster timings (s): {json.dumps({k: round(v, 1) for k, v in STATE.items() if k.endswith('_s')})}")
