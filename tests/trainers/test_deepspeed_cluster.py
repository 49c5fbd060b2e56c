"""Two DeepSpeed training ranks on two Ray nodes (ray.cluster_utils.Cluster on this machine) form one gloo group
across the nodes and train one round to the torch engine's weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ray  # noqa: E402,F401 - a hard dependency
from extras import require  # noqa: E402 - tests/ is on sys.path (pytest rootdir-relative import)

pytestmark = [pytest.mark.deepspeed, pytest.mark.cluster]
require("deepspeed")
HERE = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_training_ranks_on_two_nodes_train_one_round(base_model_dir):
    proc = subprocess.run([sys.executable, str(HERE / "deepspeed_cluster_run.py"), str(base_model_dir)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    row = json.loads([x for x in proc.stdout.splitlines() if x.startswith("{")][-1])
    assert len(set(row["nodes"])) == 2, row  # one rank per node
    assert row["steps"] == 2 and row["version"] == 1 and row["rank1_update"] is None, row
    assert row["loss_diff"] < 1e-5 and row["weight_diff"] < 1e-4, row
