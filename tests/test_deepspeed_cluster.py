"""Two DeepSpeed training ranks on two Ray nodes (ray.cluster_utils.Cluster on this machine) form one gloo group
across the nodes and train one round of a real `svgap run`; the adapter they publish is synced and saved."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("deepspeed")
HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_two_training_ranks_on_two_nodes_train_one_round(base_model_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "deepspeed_cluster_run.py"), str(base_model_dir),
                           str(tmp_path)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "training x2 on 2 node(s)" in out, out[-3000:]
    assert re.search(r"round 0: trained on 32 examples .* loss [\d.]+ -> [\d.]+", out), out[-3000:]
    run_id = re.search(r"MLflow run id: (\w+)", out).group(1)
    run = tmp_path / "runs" / run_id
    rec = json.loads((run / "rounds" / "round_000.json").read_text())
    assert rec["train"]["sync_bytes"] > 0 and rec["timings"]["sync"] > 0
    assert (run / "adapters" / "v001.npz").exists()
    assert json.loads((run / "rounds" / "round_001.json").read_text())["version"] == 1
