"""`svgap run` with the vLLM engine: a small experiment end to end on real Ray/MLflow/vLLM, no engine process left
afterwards; and without vLLM installed, one line saying how to install it (exit 2, before any round)."""
from __future__ import annotations

import os
import sys
import time

import pytest

from orchestrator.engines import registry as engines
from orchestrator.cli import main
from extras import require
from stores import sqlite_uri

pytestmark = [pytest.mark.vllm]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_vllm_missing_is_one_line_with_the_install_command(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(engines.ENGINES, "vllm", engines.EngineEntry(
        engines.ENGINES["vllm"].target, "svgap_no_such_package", engines.ENGINES["vllm"].install))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--set", "model.engine=vllm", "--set", "rounds=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[vllm]'" in err[0] and "model.engine" in err[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()  # nothing half-written


def test_model_without_a_vllm_kernel_is_one_line_before_any_pool(local_ray, base_model_dir, capsys, tmp_path,
                                                                  monkeypatch):
    require("vllm")
    from test_vllm import unwidenable_copy

    model = unwidenable_copy(base_model_dir, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--set", "model.engine=vllm", "--set", f"model.path={model}", "--set", "rounds=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "head_dim 16" in err[-1] and "cannot be widened" in err[-1] and "model.engine hf" in err[-1], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_small_run_with_the_vllm_engine_leaves_no_engine_process(local_ray, base_model_dir, tmp_path):
    require("vllm")
    import psutil  # with ray[default]: a hard dependency
    from orchestrator import config
    from orchestrator.run.experiment import Experiment

    def vllm_pids() -> set[int]:
        """vLLM processes under this test process (its Ray's workers and their engines), not another session's."""
        out = set()
        for p in psutil.Process().children(recursive=True):
            try:
                if p.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped by its parent
                    continue
                if "VLLM" in p.name() or any("VLLM" in c for c in p.cmdline()):
                    out.add(p.pid)
            except psutil.Error:
                pass
        return out

    def still_running(pids: set[int]) -> set[int]:
        """Those of `pids` still running, wherever they were re-parented to."""
        out = set()
        for pid in pids:
            try:
                p = psutil.Process(pid)
                named = "VLLM" in p.name() or any("VLLM" in c for c in p.cmdline())
                if named and p.status() != psutil.STATUS_ZOMBIE:
                    out.add(pid)
            except psutil.Error:
                pass
        return out

    before = vllm_pids()
    seen: set[int] = set()
    cfg = config.load(None, [
        "model.engine=vllm", "model.vllm.kv_cache_mb=64", "rounds=1",
        "workload.train_prompts=32", "workload.heldout_prompts=32", "generation.n=4",
        "resources.generation.actors=1", "resources.generation.cpus=0.5",
        "resources.verification.cpus=0.5", "resources.training.cpus=0.5", f"tracking.out_dir={tmp_path}/runs"])
    res = Experiment(cfg, tracking_uri=sqlite_uri(f"{tmp_path}/mlflow.db"),
                     on_round=lambda rec: seen.update(vllm_pids() - before)).run()
    assert [r.round for r in res.records] == [0, 1] and res.records[1].version == 1
    for r in res.records:  # the generation engine's own U agrees with the verification engine's teacher forcing
        assert abs(r.metrics["U_s_sampled"] - r.metrics["U_s"]) < 1e-4
        assert 0.0 <= r.metrics["heldout_acc"] <= 1.0
    assert len(seen) >= 2  # the two engines' processes were running during the rounds
    deadline = time.monotonic() + 30  # closed and killed: give the processes a moment to exit
    left = still_running(seen)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = still_running(seen)
    assert not left, f"vLLM engine processes left after the run: {sorted(left)}"
