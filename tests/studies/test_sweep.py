"""`svgap sweep` in-process on a real local Ray and a real sqlite MLflow: a driver killed mid-study (SIGKILL, in its
own process) leaves one finished trial; the same command restores the study from Tune's state and runs only the
unfinished point; the same command once more runs nothing. The parent run, its children and the summary files."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from orchestrator.store import tracking
from orchestrator.cli import main
from stores import sqlite_uri
from waits import wait_for

import ray  # noqa: E402,F401 - a hard dependency: a broken install fails here instead of skipping

ROOT = Path(__file__).resolve().parents[2]


def sweep_argv(tmp_path: Path, model_dir: Path) -> list[str]:
    argv = ["sweep", "--grid", "generation.n=2,4", "--tracking-uri", sqlite_uri(tmp_path / 'mlflow.db'),
            "--experiment", "sweep"]
    for kv in ("rounds=1", "workload.train_prompts=8", "workload.heldout_prompts=16", "training.epochs=1",
               f"model.path={model_dir}", f"tracking.out_dir={tmp_path / 'runs'}"):
        argv += ["--set", kv]
    return argv


def _lines(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def _kill_leftovers(marker: str) -> None:
    """Processes of the killed driver's own Ray (its temp dir names them): ended by pid, ours only."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _tune_saved_a_finished_trial(runs: Path) -> bool:
    """A study's Tune experiment state on disk records a TERMINATED trial (what a restore keeps finished)."""
    for f in runs.glob("studies/*/tune/experiment_state-*.json"):
        try:
            trials = json.loads(f.read_text()).get("trial_data", [])
            if any(json.loads(state).get("status") == "TERMINATED" for state, _ in trials):
                return True
        except (OSError, ValueError):  # being written
            continue
    return False


@pytest.mark.slow
def test_killed_driver_then_restore_runs_only_the_unfinished_then_nothing(local_ray, base_model_dir, tmp_path,
                                                                          tracking_uri,
                                                                          capsys):
    argv = sweep_argv(tmp_path, base_model_dir)
    uri = tracking_uri
    ray_tmp = tempfile.mkdtemp(prefix="svs", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stderr, q), daemon=True).start()
    seen, parent = [], None
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline:
            line = q.get(timeout=max(1.0, deadline - time.monotonic()))
            assert line is not None, "the first driver ended before a trial finished:\n" + "".join(seen[-30:])
            seen.append(line)
            m = re.search(r"parent MLflow run (\w+)", line)
            parent = parent or (m.group(1) if m else None)
            if "finished; trials: 1 done" in line:
                break
        else:
            pytest.fail("no trial finished in time:\n" + "".join(seen[-30:]))
        # Tune writes its experiment state every 2 s (TUNE_GLOBAL_CHECKPOINT_S): wait until it holds the trial
        wait_for(lambda: _tune_saved_a_finished_trial(tmp_path / "runs"), 120,
                 "Tune's experiment state to record the finished trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and what it started in its session
        proc.wait(timeout=60)
        _kill_leftovers(ray_tmp)
    assert "Configuration for experiment" not in "".join(seen)  # no Tune tables, our progress lines only
    first = [c for c in tracking.child_runs(parent, uri) if c.info.status == "FINISHED"]
    assert [c.data.tags["mlflow.runName"] for c in first] == ["generation.n=2 seed 0"]

    # the same command again: Tune restores the study; only generation.n=4 runs
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "restoring it" in err and f"parent MLflow run {parent}" in err
    assert "[generation.n=4 seed 0] started" in err and "[generation.n=2 seed 0] started" not in err
    assert "1 run by this command" in out
    children = tracking.child_runs(parent, uri)
    done = sorted(c.data.tags["mlflow.runName"] for c in children if c.info.status == "FINISHED")
    assert done == ["generation.n=2 seed 0", "generation.n=4 seed 0"]
    assert all(c.info.status in ("FINISHED", "KILLED") for c in children)  # the killed attempt says so
    for c in children:
        assert c.data.tags["svgap.grid_point"].startswith("generation.n=") and c.data.tags["svgap.seed"] == "0"
    assert tracking.get_run(parent, uri).info.status == "FINISHED"
    arts = set(tracking.artifact_paths(parent, uri=uri))
    assert {"sweep_table.json", "sweep_table.md", "sweep_table.csv", "sweep_generation.n.png", "config.yaml"} <= arts
    table = json.loads(tracking.artifact_text(parent, "sweep_table.json", uri))
    rows = {r["point"]: r for r in table["rows"]}
    assert set(rows) == {"generation.n=2", "generation.n=4"}
    for r in rows.values():  # the numbers are the child runs' own
        run_id = r["run_ids"][0]
        m = tracking.run_metrics(run_id, uri)
        assert r["final_acc"] == pytest.approx(m["heldout_acc"][1]) and r["rounds_run"] == [2]
        assert r["tokens_per_s"] == pytest.approx((m["tokens_per_s"][0] + m["tokens_per_s"][1]) / 2)
    folder = Path(re.search(r"study folder \(table, plots, Tune state\): (\S+)", out).group(1))
    assert folder.parent == tmp_path / "runs" / "studies" and (folder / "tune").is_dir()

    # and once more: nothing left to run, nothing new in MLflow
    before = len(children)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "nothing left to run" in out and "started" not in err
    assert len(tracking.child_runs(parent, uri)) == before
