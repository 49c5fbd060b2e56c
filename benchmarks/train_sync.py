"""Benchmark: per-round training and weight-sync cost of the training engines, on `make demo`'s experiment.

Runs the experiment once per variant (default: the torch LoRA engine, DeepSpeed with 2 ranks, full fine-tuning)
and prints a table; writes benchmarks/out/train_sync.json with, per variant, every round's train and sync seconds,
the bytes synced, the training loss and the held-out accuracy curve -- the numbers issue 10's acceptance quotes.

    python benchmarks/train_sync.py [--variants default,deepspeed2,full] [--set key=value ...]

On a shared or small machine the seconds are noisy (the JSON records the load average before and after).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from orchestrator import config
from orchestrator.run.experiment import Experiment

OUT = Path(__file__).resolve().parent / "out"
VARIANTS: dict[str, list[str]] = {
    "default": [],
    "deepspeed2": ["training.engine=deepspeed", "resources.training.actors=2"],
    "full": ["training.mode=full"],
    "deepspeed2-full": ["training.engine=deepspeed", "resources.training.actors=2", "training.mode=full"],
}


def one(name: str, overrides: list[str]) -> dict:
    cfg = config.load(None, VARIANTS[name] + overrides)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.tracking.out_dir = f"{tmp}/runs"
        t0 = time.perf_counter()
        res = Experiment(cfg, tracking_uri=f"sqlite:///{tmp}/mlflow.db").run()
        wall = time.perf_counter() - t0
    trained = [r for r in res.records if "train" in r.timings]
    return {
        "variant": name, "overrides": VARIANTS[name] + overrides, "wall_s": round(wall, 1),
        "train_s": [round(r.timings["train"], 3) for r in trained],
        "sync_s": [round(r.timings["sync"], 4) for r in trained],
        "sync_bytes": [int(r.train["sync_bytes"]) for r in trained],
        "loss_first": [round(r.train["loss_first"], 4) for r in trained],
        "loss_last": [round(r.train["loss_last"], 4) for r in trained],
        "heldout_acc": [round(r.metrics["heldout_acc"], 4) for r in res.records],
        "U_s": [round(r.metrics["U_s"], 4) for r in res.records],
        "U_v": [round(r.metrics["U_v"], 4) for r in res.records],
        "round_s": [round(r.timings["round"], 2) for r in res.records],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="default,deepspeed2,full")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=str(OUT / "train_sync.json"))
    args = ap.parse_args()
    load0 = os.getloadavg()
    runs = [one(v, args.overrides) for v in args.variants.split(",")]
    print(f"{'variant':16} {'train s/round':>13} {'sync s/round':>12} {'MB synced':>9} {'held-out first -> last':>23}")
    for r in runs:
        n = max(len(r["train_s"]), 1)
        print(f"{r['variant']:16} {sum(r['train_s']) / n:13.2f} {sum(r['sync_s']) / n:12.3f} "
              f"{r['sync_bytes'][0] / 1e6 if r['sync_bytes'] else 0:9.3f} "
              f"{r['heldout_acc'][0]:11.3f} -> {r['heldout_acc'][-1]:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg(),
                               "runs": runs}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    from orchestrator.log import setup_logging

    setup_logging()  # the runs' progress lines on stderr
    main()
