"""Full fine-tuning resumes like LoRA (issue 23 item 1): `svgap run` with training.mode=full, its driver killed with
SIGKILL at the instant π_2's weights are staged and state.json still names π_1 -- where the old code had already
deleted weights/v001.npz and the run could not be resumed -- then `svgap run --resume`: the run finishes with the
same metrics as an uninterrupted run, each step logged once, and only the committed weights are left."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from orchestrator import config
from orchestrator.cli import main
from orchestrator.store.records import ROUND_METRICS
from stores import assert_same_metrics, sqlite_uri

ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path, base_model_dir, out: str) -> list[str]:
    return ["workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2", "rounds=2",
            "training.epochs=1", "training.mode=full", "fit.online=false", "resources.generation.actors=1",
            f"tracking.out_dir={tmp_path / out}", f"model.path={base_model_dir}"]


@pytest.mark.slow
def test_full_fine_tuning_killed_between_weights_and_commit_resumes(local_ray, base_model_dir, tmp_path, capsys):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    cfg_path = tmp_path / "full.yaml"
    cfg_path.write_text(config.dump(config.load(None, tiny(tmp_path, base_model_dir, "runs"))))
    address = ray.get_runtime_context().gcs_address
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fault_driver.py"), r"^staged weights/v002\.npz",
                           "run", str(cfg_path), "--tracking-uri", uri, "--address", address],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == -signal.SIGKILL, out[-3000:]
    run_id = re.search(r"MLflow run (\w{32})", out).group(1)
    run_dir = tmp_path / "runs" / run_id
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["last_finished_round"], state["model_version"]) == (0, 1), state
    assert sorted(p.name for p in (run_dir / "weights").iterdir()) == ["v001.npz", "v002.npz"]

    assert main(["run", "--resume", run_id, "--tracking-uri", uri]) == 0
    assert "at round 1 with model version 1" in capsys.readouterr().err
    assert main(["run", str(cfg_path), "--tracking-uri", uri, "--set",
                 f"tracking.out_dir={tmp_path / 'ref'}"]) == 0
    ref_id = re.search(r"MLflow run id: (\w+)", capsys.readouterr().out).group(1)

    resumed = assert_same_metrics(run_id, ref_id, uri)
    for name in ROUND_METRICS:
        assert sorted(resumed[name]) == [0, 1, 2], name
    assert sorted(p.name for p in (run_dir / "weights").iterdir()) == ["v002.npz"]
