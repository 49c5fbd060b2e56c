"""Benchmark: the HF engine's verification work per candidate, with each token once (issue 25) and without.

Samples a round's candidates with the HF engine, then verifies them both ways, alternately (`--repeats` times, the
machine may be shared): `plain` runs every verifier query whole and, with `uncertainty: scored`, a teacher-forced
pass of every response -- the engine before issue 25; `shared` is what a round runs now: the template prefix's KV
cache, identical rows merged, U taken from the sampled logprobs. Prints seconds, the tokens each way ran (the
engine's `verify_tokens` counter) and the acceptance bound: per problem, its candidates' rows with the prefix they
all share counted once.

    python benchmarks/verify_tokens.py                      # the shipped model, default experiment sizes
    python benchmarks/verify_tokens.py --config configs/smollm2.yaml --prompts 32 --n 4 --max-new-tokens 16
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def lcp(rows: list[list[int]]) -> int:
    k = 0
    while all(len(r) > k for r in rows) and len({r[k] for r in rows}) == 1:
        k += 1
    return k


def bound(be, wl, method: str, problems, samples, scored: bool) -> int:
    """Tokens of every candidate's rows, the prefix shared by a problem's rows counted once per problem."""
    total = 0
    for p, row in zip(problems, samples):
        make = wl.tf_query if method == "tf" else wl.qe_query
        rows, _, _, _ = be._judge_rows([make(p, s.text) for s in row], method)
        if scored:
            rows += be._score_rows([p.prompt] * len(row), [s.token_ids for s in row])[0]
        k = lcp(rows)
        total += k + sum(len(r) - k for r in rows)
    return total


def timed(be, share: bool, queries, method: str, responses) -> tuple[float, dict]:
    be.share = share
    be.prefix.reset()
    before = be.verify_tokens.as_dict()
    t0 = time.perf_counter()
    be.verify(queries, method, responses if not share else None, batch_size=512)
    seconds = time.perf_counter() - t0
    after = be.verify_tokens.as_dict()
    return seconds, {k: after[k] - before[k] for k in after}


def main() -> None:
    from orchestrator import config
    from orchestrator.engines.chat import workload_for
    from orchestrator.engines.hf import HFBackend
    from orchestrator.models.source import ModelSource

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--prompts", type=int, default=None, help="default: workload.train_prompts")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scored", action="store_true", help="the round before ran a teacher-forced pass "
                                                           "(default: as the config's verification.uncertainty)")
    args = ap.parse_args()
    cfg = config.load(args.config)
    wl = workload_for(cfg)
    source = ModelSource.of(cfg)
    be = HFBackend(source.resolve(), threads=args.threads, chat_template=source.chat_template,
                   system_prompt=source.system_prompt)
    k, n = args.prompts or cfg.workload.train_prompts, args.n or cfg.generation.n
    problems = wl.problems("train", k, 0)
    t0 = time.perf_counter()
    samples = be.sample([p.prompt for p in problems], n, cfg.generation.temperature,
                        args.max_new_tokens or cfg.generation.max_new_tokens, seeds=list(range(k)))
    sample_s = time.perf_counter() - t0
    method = cfg.verification.method
    scored = args.scored or cfg.verification.uncertainty == "scored"
    make = wl.tf_query if method == "tf" else wl.qe_query
    queries = [make(p, s.text) for p, row in zip(problems, samples) for s in row]
    responses = [(p.prompt, list(s.token_ids)) for p, row in zip(problems, samples) for s in row] if scored else None
    runs: dict[str, list] = {"plain": [], "shared": []}
    for _ in range(args.repeats):
        for name in runs:
            runs[name].append(timed(be, name == "shared", queries, method, responses))
    candidates = k * n
    res = {"model": str(source.resolve()), "prompts": k, "n": n, "candidates": candidates, "method": method,
           "scored_before": scored, "template_prefix": len(be.prefix.tokens), "threads": args.threads,
           "sample_s": round(sample_s, 3), "load": os.getloadavg(),
           "bound_tokens_per_candidate": round(bound(be, wl, method, problems, samples, scored) / candidates, 2)}
    for name, rr in runs.items():
        res[name] = {"seconds": [round(s, 3) for s, _ in rr], "tokens": rr[0][1],
                     "computed_per_candidate": round(rr[0][1]["computed"] / candidates, 2)}
    best = {name: min(s for s, _ in rr) for name, rr in runs.items()}
    res["speedup"] = round(best["plain"] / best["shared"], 2)
    print(json.dumps(res, indent=1))
    OUT.mkdir(exist_ok=True)
    (OUT / f"verify_tokens_{Path(res['model']).name}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    from orchestrator.log import setup_logging

    setup_logging()
    main()
