"""Every inference engine on the real model: HF and vLLM side by side on SmolLM2-135M-Instruct (chat arithmetic).

    python benchmarks/real_model_engines.py [--prompts 32] [--n 4]

For each engine, in its own process (one engine per process, as in the actors): sampling time, TF verification
time, U of the sampled tokens against a teacher-forced score of the same tokens (HF's candidates are scored by
both engines: the relative difference is the check "sampled = scored U within 1e-3 relative to HF"), and the
process's peak resident memory. Writes benchmarks/results/real_model_engines.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "real_model_engines.json"


def one_engine(engine: str, prompts: int, n: int, candidates_file: Path) -> dict:
    """Run in a child process: this engine samples, verifies and scores (HF's candidates too, when given)."""
    import numpy as np

    from orchestrator.engines.chat import workload_for
    from orchestrator.engines.registry import make_engine
    from orchestrator.config import load
    from orchestrator.models.source import system_prompt_of

    cfg = load(ROOT / "configs" / "smollm2.yaml")
    wl = workload_for(cfg)
    model = Path(cfg.model.path).expanduser()
    opts = {"max_model_len": 256} if engine == "vllm" else None
    t0 = time.perf_counter()
    eng = make_engine(engine, model, device="cpu", dtype="float32", threads=2, options=opts,
                      chat_template="auto", system_prompt=system_prompt_of(cfg))
    start_s = time.perf_counter() - t0
    try:
        probs = wl.problems("heldout", prompts, 0)
        t0 = time.perf_counter()
        cands = eng.sample([p.prompt for p in probs], n, 0.7, cfg.generation.max_new_tokens, list(range(prompts)), 256)
        sample_s = time.perf_counter() - t0
        flat = [(p, c) for p, cs in zip(probs, cands) for c in cs]
        t0 = time.perf_counter()
        eng.tf_score([wl.tf_query(p, c.text) for p, c in flat], 256)
        tf_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        own = eng.score([p.prompt for p, _ in flat], [c.token_ids for _, c in flat], 256)
        score_s = time.perf_counter() - t0
        sampled = np.array([c.nll for _, c in flat])
        scored = np.array([s.nll for s in own])
        res = {"engine": engine, "start_s": start_s, "sample_s": sample_s, "tf_s": tf_s, "score_s": score_s,
               "candidates": len(flat), "tokens": int(sum(c.length for _, c in flat)),
               "sampled_vs_scored_max_rel": float(np.max(np.abs(sampled - scored) / np.maximum(scored, 1e-9)))}
        if candidates_file.is_file():  # HF's candidates, scored by this engine
            hf = json.loads(candidates_file.read_text())
            mine = eng.score(hf["prompts"], hf["token_ids"], 256)
            ref = np.array(hf["nll"])
            res["hf_candidates_max_rel"] = float(np.max(np.abs(np.array([s.nll for s in mine]) - ref) / ref))
        else:
            candidates_file.write_text(json.dumps({"prompts": [p.prompt for p, _ in flat],
                                                   "token_ids": [c.token_ids for _, c in flat],
                                                   "nll": [s.nll for s in own]}))
    finally:
        eng.shutdown()
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--candidates", default="/tmp/svgap-hf-candidates.json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_engine(args.child, args.prompts, args.n, Path(args.candidates))))
        return
    Path(args.candidates).unlink(missing_ok=True)
    rows = []
    for engine in ("hf", "vllm"):
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT)}
        r = subprocess.run([sys.executable, __file__, "--child", engine, "--prompts", str(args.prompts), "--n",
                            str(args.n), "--candidates", args.candidates], capture_output=True, text=True, env=env)
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            rows.append({"engine": engine, "error": (r.stderr.strip().splitlines() or ["?"])[-1]})
        else:
            rows.append(json.loads(line[7:]))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"prompts": args.prompts, "n": args.n, "rows": rows}, indent=2) + "\n")
    keys = ("start_s", "sample_s", "tf_s", "score_s", "sampled_vs_scored_max_rel", "hf_candidates_max_rel",
            "peak_rss_mb", "peak_rss_children_mb")
    print(f"{'engine':<6} " + " ".join(f"{k:>14}" for k in keys))
    for row in rows:
        if "error" in row:
            print(f"{row['engine']:<6} error: {row['error']}")
            continue
        print(f"{row['engine']:<6} " + " ".join(f"{row.get(k, float('nan')):>14.4g}" for k in keys))


if __name__ == "__main__":
    main()
