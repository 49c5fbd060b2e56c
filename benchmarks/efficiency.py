"""Benchmark: how far each stage of a round is from this machine's limit, per model and engine (`make bench`).

In one run: the machine's fp32 matmul peak (GFLOP/s, 1 thread and all threads), then per model (the shipped tiny
model; SmolLM2-135M-Instruct when `make real-model` imported it) and per engine (HF; vLLM when installed), each in
its own process with its own engine:
- generation: tokens/s (each prompt once -- the work any engine must do: vLLM's prefix cache runs a prompt once
  for its n candidates -- plus every sampled token) and the share of the peak it reaches;
- verification (TF scores + teacher-forced U in one call): tokens computed, per candidate, tokens/s, share of peak.
  Tokens computed come from the engine's own counter (`verify_tokens.computed`: rows past a reused prefix) when it
  has one, else from the candidates (`verify_tokens_from_candidates`: every row whole -- the hook to replace);
then full rounds through the real experiment (benchmarks/round_time.py's runner; shipped model: medians of rounds 1-4,
round 0 warms up; SmolLM2: rounds 0-1): each stage's share of a round, training tokens/s and share of peak, and time/generate with 1 vs 2 generation actors.
FLOPs are estimated as 2 x (non-embedding parameters) per token forwarded in scoring and generation (logits only where
read); training runs forward and backward over every prompt and response token (`train/tokens_forwarded`) with the
output head at every position: 4 x (parameters + head) per token with LoRA (frozen weights need no weight gradients),
6 x with full fine-tuning. Attention's quadratic term is left out (small at these lengths): a lower bound of the work
done, so shares are conservative.
Writes benchmarks/results/efficiency.json (--out) and prints markdown tables (docs/benchmarks.md quotes them).

    python benchmarks/efficiency.py [--models shipped,smollm2] [--engines hf,vllm] [--prompts 16] [--n 4]
                                    [--no-rounds] [--round-set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"
SMOL = Path("~/.cache/svgap/models/SmolLM2-135M-Instruct").expanduser()


def matmul_peak(threads: int, n: int = 1024, seconds: float = 1.5) -> float:
    """Best fp32 GFLOP/s of an n x n matmul with `threads` torch threads over ~`seconds`."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def forward_flops_per_token(model_dir: Path) -> float:
    """2 x the parameters every token goes through (embedding and output head left out: read, not multiplied)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                if "embed" not in k and "lm_head" not in k:
                    total += _numel(st.get_slice(k).get_shape())
    return 2.0 * total


def head_flops(model_dir: Path) -> float:
    """2 x vocab x hidden: the output head's multiply per position whose logits are computed (training: every one)."""
    c = json.loads((model_dir / "config.json").read_text())
    return 2.0 * c["vocab_size"] * c["hidden_size"]


def mode(path: Path | None) -> str:
    from orchestrator.config import load

    return load(path, []).training.mode


def _numel(shape) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def setup(model: str):
    """(config, workload, model folder, system prompt) of a benchmark model."""
    from orchestrator.config import load
    from orchestrator.engines.chat import workload_for
    from orchestrator.models.source import system_prompt_of

    if model == "smollm2":
        cfg = load(ROOT / "configs" / "smollm2.yaml")
        return cfg, workload_for(cfg), Path(cfg.model.path).expanduser(), system_prompt_of(cfg)
    cfg = load(None, [])
    return cfg, workload_for(cfg), ROOT / "workloads" / "arithmetic" / "shipped", None


def verify_tokens_from_candidates(engine, items: list[tuple]) -> int:
    """Tokens of every verification row run whole (TF query + teacher-forced prompt + response): the count for an
    engine without a `verify_tokens` counter -- the hook an engine's own counter replaces."""
    queries = engine.prompts.encode_many(["".join(q.segments) for q, _, _ in items])
    prompts = engine.prompts.encode_many([p for _, p, _ in items])
    return sum(len(q) for q in queries) + sum(len(p) + len(r) for p, (_, _, r) in zip(prompts, items))


def engine_stages(engine_name: str, model: str, prompts: int, n: int, threads: int) -> dict:
    """In a child process: one engine samples `prompts` x `n` candidates, then verifies them (TF + scored U)."""
    from orchestrator.engines.registry import make_engine

    cfg, wl, model_dir, system = setup(model)
    opts = ({"max_model_len": 256} if model == "smollm2" else {}) if engine_name == "vllm" else None
    eng = make_engine(engine_name, model_dir, device="cpu", dtype="float32", threads=threads, options=opts,
                      chat_template="auto", system_prompt=system)
    try:
        probs = wl.problems("train", prompts, 0)
        t0 = time.perf_counter()
        cands = eng.sample([p.prompt for p in probs], n, cfg.generation.temperature, cfg.generation.max_new_tokens,
                           list(range(prompts)), 256)
        gen_s = time.perf_counter() - t0
        prompt_tokens = sum(len(ids) for ids in eng.prompts.encode_many([p.prompt for p in probs]))
        new_tokens = sum(c.length for row in cands for c in row)
        items = [(wl.tf_query(p, c.text), p.prompt, c.token_ids) for p, row in zip(probs, cands) for c in row]
        counter = getattr(eng, "verify_tokens", None)
        before = counter.computed if counter is not None else 0
        t0 = time.perf_counter()
        eng.verify([q for q, _, _ in items], "tf", [(p, r) for _, p, r in items], 256)
        ver_s = time.perf_counter() - t0
        computed = counter.computed - before if counter is not None else verify_tokens_from_candidates(eng, items)
    finally:
        eng.shutdown()
    return {"engine": engine_name, "model": model, "threads": threads, "candidates": len(items),
            "generate_s": gen_s, "generate_tokens": prompt_tokens + new_tokens, "new_tokens": new_tokens,
            "verify_s": ver_s, "verify_tokens": computed, "verify_counter": counter is not None}


def child(engine: str, model: str, prompts: int, n: int, threads: int) -> dict:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, __file__, "--child", f"{engine}:{model}", "--prompts", str(prompts), "--n",
                        str(n), "--threads", str(threads)], capture_output=True, text=True, env=env)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"engine": engine, "model": model, "error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(line[7:])


def with_shares(row: dict, peak: float, flops: float) -> dict:
    """tokens/s and the share of the matmul peak (GFLOP/s) per stage."""
    if "error" in row:
        return row
    for stage in ("generate", "verify"):
        tps = row[f"{stage}_tokens"] / row[f"{stage}_s"]
        row[f"{stage}_tok_s"] = round(tps, 1)
        row[f"{stage}_peak_share"] = round(tps * flops / 1e9 / peak, 4)
    row["verify_tokens_per_candidate"] = round(row["verify_tokens"] / row["candidates"], 1)
    return row


def rounds(models: list[str], engines: list[str], extra: list[str], peak: float, flops: dict) -> list[dict]:
    """Full rounds (round_time's runner, 1 round each): stage shares, training share of peak, 1 vs 2 actors."""
    from round_time import one_run

    out = []
    variants = [(e, "1x1") for e in engines[:1]] + [(e, "2x0.5") for e in engines] + [(engines[0], "2x1j")]
    for model in models:
        path = None if model == "shipped" else ROOT / "configs" / "smollm2.yaml"
        for engine, shape in (variants if model == "shipped" else [(e, "2x0.5") for e in engines]):
            try:
                # shipped: 4 rounds after the warm-up one, medians; SmolLM2 (minutes a round): rounds 0 and 1
                r = one_run(engine, "default", shape, "merge", [f"rounds={4 if path is None else 1}", *extra], path)
            except Exception as e:  # noqa: BLE001 - one variant failing is a row, not the end of the benchmark
                r = {"engine": engine, "generation": shape, "error": f"{type(e).__name__}: {e}"[:300]}
            r["model"] = model
            if "train_forwarded_per_s" in r:  # LoRA: forward + input gradients (frozen weights need no weight
                # gradients), 2 x 2 x (parameters + output head) per token the passes ran; full fine-tuning 3 x
                per_token = (2 if mode(path) == "lora" else 3) * (flops[model] + head_flops(setup(model)[2]))
                r["train_peak_share"] = round(r["train_forwarded_per_s"] * per_token / 1e9 / peak, 4)
            out.append(r)
            print(json.dumps(r), flush=True)
    return out


def tables(peak: dict, rows: list[dict], runs: list[dict]) -> str:
    lines = [f"matmul peak (fp32): {peak['1']:.0f} GFLOP/s on 1 thread, {peak['all']:.0f} GFLOP/s on "
             f"{peak['threads']} threads", "",
             "| model | engine | candidates | generate tok/s | % peak | verify tok/s | % peak | verify tokens / "
             "candidate | counter |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['engine']} | error: {r['error']} |")
            continue
        lines.append(f"| {r['model']} | {r['engine']} | {r['candidates']} | {r['generate_tok_s']:.0f} | "
                     f"{100 * r['generate_peak_share']:.1f} | {r['verify_tok_s']:.0f} | "
                     f"{100 * r['verify_peak_share']:.1f} | {r['verify_tokens_per_candidate']} | "
                     f"{'engine' if r['verify_counter'] else 'rows'} |")
    if runs:
        lines += ["", "| model | engine | gen actors | round s | generate | verify | held-out wait | train | sync | "
                  "orchestration | train % peak |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in runs:
            if "error" in r:
                lines.append(f"| {r['model']} | {r['engine']} | {r['generation']} | error: {r['error']} |")
                continue
            s = r["share"]
            lines.append(f"| {r['model']} | {r['engine']} | {r['generation']} | {r['round_s']:.2f} | " + " | ".join(
                f"{100 * s[k]:.0f} %" for k in ("generate", "verify", "heldout_wait", "train", "sync",
                                                 "orchestration")) + f" | {100 * r.get('train_peak_share', 0):.1f} |")
        by = {(r["model"], r["engine"], r["generation"]): r for r in runs if "error" not in r}
        for (model, engine, shape), one in by.items():
            two = by.get((model, engine, "2x0.5"))
            if shape == "1x1" and two:
                lines.append(f"\n{model} {engine}: time/generate 1 actor / 2 actors = "
                             f"{one['generate_s'] / two['generate_s']:.2f}x")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="shipped,smollm2")
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-rounds", action="store_true")
    ap.add_argument("--out", default="efficiency", help="benchmarks/results/<out>.json")
    ap.add_argument("--round-set", dest="round_set", action="append", default=[])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, model = args.child.split(":")
        print("RESULT " + json.dumps(engine_stages(engine, model, args.prompts, args.n, args.threads)))
        return
    import importlib.util

    models = [m for m in args.models.split(",") if m != "smollm2" or (SMOL / "config.json").is_file()]
    engines = [e for e in args.engines.split(",") if e != "vllm" or importlib.util.find_spec("vllm")]
    load_before = os.getloadavg()
    peak = {"1": matmul_peak(1), "all": matmul_peak(os.cpu_count() or 1), "threads": os.cpu_count()}
    flops = {m: forward_flops_per_token(setup(m)[2]) for m in models}
    rows = [with_shares(child(e, m, args.prompts, args.n, args.threads), peak[str(args.threads)]
                        if args.threads == 1 else peak["all"], flops[m]) for m in models for e in engines]
    runs = [] if args.no_rounds else rounds(models, engines, args.round_set, peak["all"], flops)
    text = tables(peak, rows, runs)
    print(text)
    out = RESULTS / f"{args.out}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                               "peak_gflops": peak, "flops_per_token": flops, "stages": rows, "rounds": runs,
                               "table": text}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    from orchestrator.log import setup_logging

    setup_logging()
    main()
