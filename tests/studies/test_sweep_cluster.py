"""A sweep on a 3-node ray.cluster_utils.Cluster (own process, own Ray): 2 x 2 trials spread over the nodes as their
resources allow; one trial's generation actor is SIGKILLed and, with lost actors not replaced
(resources.retries=0), the trial fails -- Tune's FailureConfig retries it and the study completes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ray  # noqa: E402,F401 - a hard dependency: a broken install fails here instead of skipping

pytestmark = [pytest.mark.cluster]

HERE = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_three_node_sweep_spreads_and_retries_a_killed_trial(base_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "sweep_cluster_run.py"), str(base_model_dir), str(tmp_path)],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    res = json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])
    assert res["died"], "no generation actor was killed"
    outcomes = res["outcomes"]
    assert len(outcomes) == 4 and all(o["error"] is None and o["rounds"] == 2 for o in outcomes), outcomes
    assert sorted(o["attempts"] for o in outcomes) == [1, 1, 1, 2]  # the killed trial ran twice
    runs = res["runs"]
    assert sorted(r["status"] for r in runs) == ["FAILED"] + ["FINISHED"] * 4
    assert len({r["node"] for r in runs if r["status"] == "FINISHED"}) >= 2  # spread over the nodes
    assert res["concurrency"] >= 2 and res["parent_status"] == "FINISHED"
    assert re.search(r"\] failed \(failure 1\): .*; Tune retries it", out), out[-3000:]
