"""The DeepSpeed training engine against the torch engine: 2 data-parallel ranks (real Ray actors, gloo, ZeRO-2)
train the same examples with the same global batch to the same weights and losses, LoRA and full fine-tuning; every
ZeRO stage is accepted; DeepSpeed's own config errors are one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extras import require  # noqa: E402 - tests/ is on sys.path (pytest rootdir-relative import)

pytestmark = [pytest.mark.deepspeed]
require("deepspeed")
HERE = Path(__file__).resolve().parents[1]
WEIGHT_TOL, LOSS_TOL = 1e-4, 1e-5  # fp32; measured 2e-5 / 1e-6 here (issue 10)


def flat(update) -> np.ndarray:
    parts = [x for v in (update.tensors[k] for k in sorted(update.tensors))
             for x in (v if isinstance(v, tuple) else (v,))]
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])


def examples(n: int, seed: int):
    import workloads
    from orchestrator.trainers.base import TrainingExample

    wl = workloads.get("arithmetic", {})
    return [TrainingExample(p.prompt, response_text=wl.reference(p), external=True)
            for p in wl.problems("train", n, seed=seed)]


def test_two_ranks_equal_the_torch_engine_lora_and_full(local_ray, base_model_dir):
    """30 examples, global batch 8 (the last one short, so a rank runs an empty micro-batch), 2 epochs. LoRA: 8/2 = 4
    examples per rank and step; full: micro-batch 2 x 2 accumulation steps x 2 ranks. One pair of actors does both."""
    import torch

    from orchestrator.trainers.lora import TorchTrainer
    from orchestrator.config import DeepSpeedSection, PoolResources, TrainingConfig
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.group import ActorGroup, PoolSpec
    from orchestrator.roles.worker import WorkerSpec

    from deepspeed_helpers import SwitchingTrainingWorker

    torch.set_num_threads(1)
    exs = examples(30, seed=1)
    runs = {"lora": (dict(mode="lora", batch_size=8, epochs=2, lr=5e-3), None),
            "full": (dict(mode="full", batch_size=8, epochs=2, lr=1e-3), 2)}
    ds_cfg = {m: TrainingConfig(engine="deepspeed", deepspeed=DeepSpeedSection(zero_stage=2, micro_batch=mb), **kw)
              for m, (kw, mb) in runs.items()}
    source = ModelSource("arithmetic", {}, str(base_model_dir), "~/.cache/svgap")
    group = ActorGroup(PoolSpec("training", PoolResources(actors=2, cpus=0.5), "PACK", 300.0),
                       SwitchingTrainingWorker, WorkerSpec("training", source, "cpu", "float32", 0.5, 1),
                       ds_cfg["lora"], 0, ranks=True)
    got = {}
    try:
        for mode in runs:
            if mode != "lora":
                group.call_all("switch", "switch", ds_cfg[mode])
            got[mode] = group.call_all("train", "train", exs, 0)
    finally:
        group.shutdown()
    for mode, (kw, _) in runs.items():
        (s0, up0), (s1, up1) = got[mode]
        ref_trainer = TorchTrainer(base_model_dir, TrainingConfig(**kw), device="cpu")
        before = ref_trainer.update()
        ref_stats, ref = ref_trainer.train(exs, 0)
        assert up1 is None and up0.version == 1, mode  # rank 0 returns the update
        assert (s1.loss_first, s1.loss_last, s1.steps) == (s0.loss_first, s0.loss_last, s0.steps)  # global loss
        assert s0.steps == ref_stats.steps == 8 and s0.tokens == ref_stats.tokens
        assert abs(s0.loss_first - ref_stats.loss_first) < LOSS_TOL, (mode, s0, ref_stats)
        assert abs(s0.loss_last - ref_stats.loss_last) < LOSS_TOL, (mode, s0, ref_stats)
        assert type(up0) is type(ref) and sorted(up0.tensors) == sorted(ref.tensors)
        diff = float(np.abs(flat(up0) - flat(ref)).max())
        moved = float(np.abs(flat(ref) - flat(before)).max())
        assert diff < WEIGHT_TOL < moved, (mode, diff, moved)


def test_every_zero_stage_is_accepted_restores_and_bad_ds_config_is_one_line(base_model_dir):
    proc = subprocess.run([sys.executable, str(HERE / "deepspeed_stages_run.py"), str(base_model_dir)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    rows = {(r["stage"], r["precision"]): r for r in lines if "stage" in r}
    assert sorted(rows) == [(0, "fp32"), (1, "fp32"), (2, "bf16"), (2, "fp32"), (3, "fp32")]
    for (stage, precision), r in rows.items():
        assert r["steps"] == 3 and r["version"] == 1
        if precision == "fp32":  # one rank: the same arithmetic as the torch engine
            assert r["loss_diff"] < LOSS_TOL and r["weight_diff"] < WEIGHT_TOL, r
        if precision == "fp32" and stage >= 2:  # restore refreshes DeepSpeed's fp32 master copy too
            assert r["restored_version"] == 1 and r["restore_diff"] == 0.0, r
            assert r["after_restore_train_diff"] < 1e-6, r
        else:  # bf16 weights and activations: close, not equal
            assert r["loss_diff"] < 0.1 and r["weight_diff"] < 0.05, r
    after_close = [r["after_close"] for r in lines if "after_close" in r]
    assert after_close and after_close[0]["loss_diff"] < LOSS_TOL and after_close[0]["weight_diff"] < WEIGHT_TOL, lines
    rejected = [r["rejected"] for r in lines if "rejected" in r]
    assert rejected and rejected[0] and rejected[0].startswith("training.deepspeed: DeepSpeed rejected the config")
    assert "\n" not in rejected[0]
