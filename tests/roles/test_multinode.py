"""Two Ray nodes on one machine (ray.cluster_utils.Cluster): `svgap run --address` joins the cluster, SPREAD puts
the two generation actors on different nodes, and the round runs end to end."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ray  # noqa: E402,F401 - a hard dependency: a broken install fails here instead of skipping

pytestmark = [pytest.mark.cluster]
HERE = Path(__file__).resolve().parents[1]


def test_two_node_cluster_spread_run(base_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "multinode_run.py"), str(base_model_dir), str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "placed: generation x2 on 2 node(s)" in out, out[-3000:]
    run_id = re.search(r"MLflow run id: (\w+)", out).group(1)
    assert (tmp_path / "runs" / run_id / "rounds" / "round_001.json").exists()
