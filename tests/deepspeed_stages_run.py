"""Run by trainers/test_deepspeed.py in its own process (DeepSpeed sets up torch.distributed process-wide): one rank of
the DeepSpeed engine with ZeRO stages 0-3 (and bf16 on stage 2) trains the same examples as the torch engine; prints one
JSON line per configuration, and one for a ds_config DeepSpeed rejects.

    python tests/deepspeed_stages_run.py MODEL_DIR
"""
from __future__ import annotations

import json
import socket
import sys
import tempfile

import numpy as np
import torch


def flat(update) -> np.ndarray:
    parts = [x for v in (update.tensors[k] for k in sorted(update.tensors))
             for x in (v if isinstance(v, tuple) else (v,))]
    return np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])


def main() -> int:
    import workloads
    from orchestrator.trainers.deepspeed import DeepSpeedTrainer
    from orchestrator.trainers.lora import TorchTrainer
    from orchestrator.trainers.base import RankEnv, TrainingExample
    from orchestrator.config import DeepSpeedSection, TrainingConfig
    from orchestrator.errors import SvgapError

    torch.set_num_threads(1)
    model_dir = sys.argv[1]
    wl = workloads.get("arithmetic", {})
    examples = [TrainingExample(p.prompt, response_text=wl.reference(p), external=True)
                for p in wl.problems("train", 20, seed=3)]
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    env = RankEnv(master_port=port)
    ref_stats, ref = TorchTrainer(model_dir, TrainingConfig(batch_size=8, epochs=1), device="cpu").train(examples, 0)
    for stage, precision in ((0, "fp32"), (1, "fp32"), (2, "fp32"), (3, "fp32"), (2, "bf16")):
        cfg = TrainingConfig(engine="deepspeed", batch_size=8, epochs=1,
                             deepspeed=DeepSpeedSection(zero_stage=stage, precision=precision))
        tr = DeepSpeedTrainer(model_dir, cfg, device="cpu", env=env)
        stats, up = tr.train(examples, 0)
        row = {"stage": stage, "precision": precision, "steps": stats.steps,
               "loss_diff": max(abs(stats.loss_first - ref_stats.loss_first),
                                abs(stats.loss_last - ref_stats.loss_last)),
               "weight_diff": float(np.abs(flat(up) - flat(ref)).max()), "version": up.version}
        if precision == "fp32" and stage >= 2:  # resume: save, restore into a fresh rank, train on identically
            with tempfile.TemporaryDirectory() as tmp:
                tr.save(tmp)
                fresh = DeepSpeedTrainer(model_dir, cfg, device="cpu", env=env)
                row["restored_version"] = fresh.restore(tmp)
                row["restore_diff"] = float(np.abs(flat(fresh.update()) - flat(up)).max())
                _, a = tr.train(examples, 1)
                _, b = fresh.train(examples, 1)
                row["after_restore_train_diff"] = float(np.abs(flat(a) - flat(b)).max())
        print(json.dumps(row), flush=True)
    # a trainer after close() (a re-formed rank group, another precision in the same process) forms a new group:
    # DeepSpeed's cached handles on the destroyed one made deepspeed.initialize fail with "Group ... is not registered"
    tr.close()
    with socket.socket() as s:
        s.bind(("", 0))
        env = RankEnv(master_port=s.getsockname()[1])
    cfg = TrainingConfig(engine="deepspeed", batch_size=8, epochs=1, deepspeed=DeepSpeedSection(zero_stage=2))
    stats, up = DeepSpeedTrainer(model_dir, cfg, device="cpu", env=env).train(examples, 0)
    print(json.dumps({"after_close": {"loss_diff": max(abs(stats.loss_first - ref_stats.loss_first),
                                                       abs(stats.loss_last - ref_stats.loss_last)),
                                      "weight_diff": float(np.abs(flat(up) - flat(ref)).max())}}), flush=True)
    try:
        bad = TrainingConfig(engine="deepspeed", batch_size=8, deepspeed=DeepSpeedSection(
            ds_config={"zero_optimization": {"stage": 7}}))
        DeepSpeedTrainer(model_dir, bad, device="cpu", env=env)
        print(json.dumps({"rejected": None}))
    except SvgapError as e:
        print(json.dumps({"rejected": str(e)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
