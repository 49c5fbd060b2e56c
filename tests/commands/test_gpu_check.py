"""benchmarks/gpu_check.py is run only on the rare GPU machine; here it must at least run, pass its CPU rows and say
why its CUDA rows are skipped (on a machine with CUDA they run for real)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu]

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_and_reports_every_path(base_model_dir, tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--model", str(base_model_dir),
                           "--prompts", "32", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    by = {(r["check"], r["device"], r["dtype"]): r for r in rows}
    assert by[("sample logprobs = teacher-forced NLL", "cpu", "float32")]["status"] == "PASS"
    assert by[("LoRA round: loss falls, merged adapter lowers NLL", "cpu", "float32")]["status"] == "PASS"
    cuda_rows = [r for r in rows if r["device"] == "cuda"]
    ds_rows = [r for r in rows if r["check"].startswith("DeepSpeed")]
    if torch.cuda.is_available():
        assert all(r["status"] == "PASS" for r in cuda_rows), cuda_rows
        assert {r["dtype"] for r in ds_rows if r["device"] == "cuda"} == {"float32", "bfloat16"}, ds_rows
    else:
        assert cuda_rows and all(r["status"] == "SKIP" and r["why"] == "no CUDA device here" for r in cuda_rows)
        # the DeepSpeed row's code runs here on CPU (gloo): one ZeRO-2 step equals the torch engine's
        cpu_ds = by[("DeepSpeed ZeRO-2 step = torch engine step", "cpu", "float32")]
        assert cpu_ds["status"] == "PASS" and cpu_ds["numbers"]["loss_diff"] <= 1e-5, cpu_ds
        assert [r["device"] for r in ds_rows] == ["cpu", "cuda"]
    # a real architecture (tiny random Gemma2 with soft-capping and a chat template) through the HF engine
    real = [r for r in rows if r["check"].startswith("real architecture")]
    cpu_real = next(r for r in real if r["device"] == "cpu")
    assert cpu_real["status"] == "PASS" and cpu_real["numbers"]["chat_template"] is True, cpu_real
    assert "Gemma2" in cpu_real["check"] and cpu_real["numbers"]["max_abs_diff"] <= 1e-4
    assert {r["dtype"] for r in real if r["device"] == "cuda"} == {"float32", "bfloat16"}
    assert "status numbers / why" in proc.stdout  # the printed table
