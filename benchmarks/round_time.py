"""Benchmark: where a round's time goes, per engine and per generation-pool shape, measured side by side in one run.

Runs the default experiment (`--set rounds=2` unless told otherwise) once per variant and prints one table:
tokens/s of sampling (inside the generation actors), `time/generate` with 1 actor of 1 CPU vs 2 actors of 0.5 CPU,
and each stage's share of a training round (generate, verify, held-out wait, select, train, sync, and the
orchestration left over: logging, files, fits). Writes benchmarks/out/round_time.json, with the machine's load
average before and after (the machine may be shared: throughput is only comparable within one run).

Models: `default` is the default experiment's model (vLLM runs it as its exact widened equivalent, head_dim 16 ->
64: engines/vllm_widen.py); `h2` is the same recipe with 2 attention heads (head_dim 32, built and cached on first
use, ~2-7 min), a model vLLM's CPU kernels take as it is.

    python benchmarks/round_time.py [--variants hf:default:2x0.5,vllm:h2:1x1:merge,...] [--rounds 2]
                                    [--set key=value ...] [--out NAME]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from orchestrator import config
from orchestrator.run.experiment import Experiment

OUT = Path(__file__).resolve().parent / "out"
STAGES = ("generate", "verify", "heldout_wait", "select", "train", "sync")
SHAPES = {"2x0.5": ["resources.generation.actors=2", "resources.generation.cpus=0.5"],
          "1x1": ["resources.generation.actors=1", "resources.generation.cpus=1"],
          # verification on the generation actors, training taking turns on their bundles: 2 actors x 1 CPU
          "2x1j": ["resources.generation.actors=2", "resources.generation.cpus=1",
                   "resources.colocate_verification=true", "resources.colocate_training=always"]}
MODELS = {"default": [], "h2": ["workload.options.heads=2", "workload.options.max_seconds=2400"]}
LORA = {"request": ["model.vllm.lora_mode=request"], "merge": ["model.vllm.lora_mode=merge"]}
VARIANTS = ("hf:default:2x0.5,hf:default:1x1,vllm:default:2x0.5:merge,vllm:default:1x1:merge,"
            "vllm:default:2x0.5:request")


def one_run(engine: str, model: str, shape: str, lora: str, overrides: list[str], path=None) -> dict:
    lora_set = LORA[lora] if engine == "vllm" else []
    cfg = config.load(path, [f"model.engine={engine}", *MODELS[model], *SHAPES[shape], *lora_set, *overrides])
    label = f"{engine} {model} gen {shape}" + (f" lora {lora}" if engine == "vllm" else "")
    with tempfile.TemporaryDirectory() as tmp:
        cfg.tracking.out_dir = f"{tmp}/runs"
        t0 = time.perf_counter()
        res = Experiment(cfg, tracking_uri=f"sqlite:///{tmp}/mlflow.db").run()
        wall = time.perf_counter() - t0
    recs = res.records[1:] if len(res.records) > 2 else res.records  # round 0 warms up (first passes, caches)
    trained = [r for r in recs if "train" in r.timings] or recs  # full rounds: measure + train + sync
    total = sum(r.timings["round"] for r in trained)
    share = {k: sum(r.timings.get(k, 0.0) for r in trained) / total for k in STAGES}
    share["orchestration"] = max(0.0, 1.0 - sum(share.values()))
    mid = statistics.median  # a round disturbed by something else on the machine does not move the figure
    return {
        "engine": engine if engine == "hf" else f"vllm-{lora[:5]}", "model": model, "generation": shape,
        "wall_s": round(wall, 1), "rounds": len(res.records) - 1, "measured_rounds": [r.round for r in recs],
        "round_s": round(mid([r.timings["round"] for r in trained]), 3),
        "generate_s": round(mid([r.timings["generate"] for r in recs]), 3),
        "verify_s": round(mid([r.timings["verify"] for r in recs]), 3),
        "tokens_per_s": round(mid([r.metrics["tokens_per_s"] for r in recs])),
        "train_tokens_per_s": round(mid([r.train["tokens"] / max(r.timings["train"], 1e-9) for r in trained
                                          if r.train]) if any(r.train for r in trained) else 0.0, 1),
        "train_forwarded_per_s": round(mid([r.train.get("tokens_forwarded", 0) / max(r.timings["train"], 1e-9)
                                             for r in trained if r.train]) if any(r.train for r in trained) else 0.0, 1),
        "share": {k: round(v, 3) for k, v in share.items()},
        "U_s": [round(r.metrics["U_s"], 4) for r in res.records],
        "U_s_sampled": [round(r.metrics["U_s_sampled"], 4) for r in res.records],
        "heldout_acc": [round(r.metrics["heldout_acc"], 4) for r in res.records],
    }


def table(runs: list[dict]) -> str:
    head = (f"{'engine':11} {'model':7} {'gen':6} {'tok/s':>7} {'generate':>9} {'verify':>7} {'round':>7} | "
            + " ".join(f"{k[:8]:>8}" for k in (*STAGES, "orchestration")))
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(f"{r['engine']:11} {r['model']:7} {r['generation']:6} {r['tokens_per_s']:>7} "
                     f"{r['generate_s']:>8.2f}s "
                     f"{r['verify_s']:>6.2f}s {r['round_s']:>6.2f}s | "
                     + " ".join(f"{100 * r['share'][k]:>7.1f}%" for k in (*STAGES, "orchestration")))
    by = {(r["engine"], r["model"], r["generation"]): r for r in runs}
    for engine, model in dict.fromkeys((r["engine"], r["model"]) for r in runs):
        one, two = by.get((engine, model, "1x1")), by.get((engine, model, "2x0.5"))
        if one and two:
            lines.append(f"{engine} {model}: time/generate 1 actor x 1 CPU / 2 actors x 0.5 CPU = "
                         f"{one['generate_s'] / two['generate_s']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=VARIANTS, help="engine:model:generation shape, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default="round_time")
    args = ap.parse_args()
    load_before = os.getloadavg()
    runs = []
    for variant in args.variants.split(","):
        engine, model, shape, *lora = variant.split(":")
        runs.append(one_run(engine, model, shape, (lora or ["request"])[0], [f"rounds={args.rounds}", *args.overrides]))
        print(json.dumps(runs[-1]), flush=True)
    text = table(runs)
    print(text)
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{args.out}.json"
    path.write_text(json.dumps({"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                                "overrides": args.overrides, "runs": runs, "table": text}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    from orchestrator.log import setup_logging

    setup_logging()  # the runs' progress lines on stderr
    main()
