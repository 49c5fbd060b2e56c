"""The requests the vLLM engine sends to verify: teacher forcing through `prompt_logprobs`, and verifier judgments
read with exact logprobs of the words' tokens (`logprob_token_ids`, full-vocabulary values of exactly those tokens;
`allowed_token_ids` + top-k logprobs would renormalise or miss them). Words of several tokens are read token by
token and multiplied, as the HF engine does (engines/judge.py): the two engines give the same scores."""
from __future__ import annotations

import math

from orchestrator.engines.base import Scored


def score_requests(engine, prompts: list[str], responses: list[list[int]]) -> tuple[list, list, list]:
    from vllm import SamplingParams

    if len(prompts) != len(responses):
        raise ValueError(f"score needs one response per prompt ({len(prompts)} vs {len(responses)})")
    p = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
    rows, starts = [], []
    for pid, r in zip(engine.opening(list(prompts)), responses):
        rows.append(pid + list(r))
        starts.append(len(pid))
    return rows, [p] * len(rows), starts

def scored(row: list[int], start: int, req) -> Scored:
    nll = [-float(req.prompt_logprobs[k][row[k]].logprob) for k in range(start, len(row))]
    return Scored(nll=float(sum(nll)), token_nll=nll, length=len(nll))

def word_reads(row: list[int], tails: list[list[int]], rows: list, params: list) -> list:
    """Requests that read every token of every word after `row` with exact logprobs (`logprob_token_ids`):
    one request per distinct word prefix, so single-token words cost one request together. Returns, per word,
    its (request index, token id) reads: log P(word) is their sum, as the HF engine reads it (judge.py)."""
    from vllm import SamplingParams

    need: dict[tuple, set] = {}
    for w in tails:
        for k in range(len(w)):
            need.setdefault(tuple(w[:k]), set()).add(w[k])
    at = {}
    for ext, toks in need.items():
        at[ext] = len(rows)
        rows.append(row + list(ext))
        params.append(SamplingParams(max_tokens=1, logprob_token_ids=sorted(toks), detokenize=False))
    return [[(at[tuple(w[:k])], w[k]) for k in range(len(w))] for w in tails]

def judge_requests(engine, queries: list, method: str) -> tuple[list, list, list]:
    """The requests of every judgment: TF after each segment (the row going on with the true word), QE once over
    the grades. Returns rows, params and, per query, its judgments' word reads."""
    rows: list = []
    params: list = []
    plan: list = []
    if method == "tf":
        if any(not q.segments for q in queries):
            raise ValueError("TFQuery needs at least one segment")
        firsts = engine.opening([q.segments[0] for q in queries])
        rests = iter(engine.encode_many([s for q in queries for s in q.segments[1:]], special=False))
        for q, first in zip(queries, firsts):
            prefix, tails = engine.words((q.true_token, q.false_token), "TF words")
            row = list(first) + prefix
            judgments = [word_reads(row, tails, rows, params)]
            for _ in q.segments[1:]:
                row = row + tails[0] + next(rests) + prefix
                judgments.append(word_reads(row, tails, rows, params))
            plan.append(judgments)
    else:
        if any(len(q.grade_tokens) < 2 for q in queries):
            raise ValueError("QEQuery needs at least two grade tokens")
        for q, row in zip(queries, engine.opening([q.text for q in queries])):
            prefix, tails = engine.words(tuple(q.grade_tokens), "QE grade tokens")
            plan.append([word_reads(list(row) + prefix, tails, rows, params)])
    return rows, params, plan

def judge(method: str, judgments: list, outs: list) -> float:
    def logp(reads) -> float:
        return sum(outs[r].outputs[0].logprobs[0][tok].logprob for r, tok in reads)

    if method == "tf":  # prod_k P_k(true) / (P_k(true) + P_k(false)) = prod_k sigmoid(log P_k(T) - log P_k(F))
        total = 0.0
        for true, false in judgments:
            d = logp(true) - logp(false)
            total += -math.log1p(math.exp(-d)) if d > -30 else d
        return math.exp(total)
    g = [logp(w) for w in judgments[0]]
    m = max(g)
    w = [math.exp(x - m) for x in g]
    return sum(k * x for k, x in enumerate(w)) / sum(w) / (len(g) - 1)
