"""The requests the vLLM engine sends to verify: teacher forcing through `prompt_logprobs`, and verifier judgments
read with exact logprobs of the words' tokens (`logprob_token_ids`, full-vocabulary values of exactly those tokens;
`allowed_token_ids` + top-k logprobs would renormalise or miss them). Words of several tokens are read token by
token and multiplied, as the HF engine does (engines/judge.py): the two engines give the same scores."""
from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.engines.base import Scored


@dataclass
class Work:
    """Verification work so far (the names of the HF engine's counter): requests sent, their tokens, and the tokens
    computed -- those past each request's prefix-cache hit (benchmarks read it: tokens computed per candidate)."""
    rows: int = 0
    row_tokens: int = 0
    computed: int = 0

    def add(self, rows: list[list[int]], outs: list) -> None:
        self.rows += len(rows)
        self.row_tokens += sum(len(r) for r in rows)
        self.computed += sum(len(r) - (o.num_cached_tokens or 0) for r, o in zip(rows, outs))


def score_requests(engine, prompts: list[str], responses: list[list[int]],
                   reuse: bool = True) -> tuple[list, list, list]:
    """One teacher-forcing request per candidate: prompt logprobs of the row prompt + response, read over the
    response only. `reuse`: the row may start from cached KV blocks of the same prefix (automatic prefix caching:
    the system turn, a problem's prompt shared by its N candidates), so only the blocks past them are computed and
    only those positions get logprobs -- `scored_ok` says whether they cover the response; vLLM's default for
    prompt logprobs is to recompute the whole row."""
    from vllm import SamplingParams

    if len(prompts) != len(responses):
        raise ValueError(f"score needs one response per prompt ({len(prompts)} vs {len(responses)})")
    p = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, skip_reading_prefix_cache=not reuse)
    rows, starts = [], []
    for pid, r in zip(engine.opening(list(prompts)), responses):
        rows.append(pid + list(r))
        starts.append(len(pid))
    return rows, [p] * len(rows), starts


def scored_ok(start: int, req) -> bool:
    """Whether a request's prompt logprobs cover its response: the position of the response's first token (start)
    must have been computed, i.e. the prefix read from the cache ends before it (entries of cached positions are
    left unwritten by vLLM, never read here)."""
    return (req.num_cached_tokens or 0) <= start - 1


def scored(row: list[int], start: int, req) -> Scored:
    nll = [-float(req.prompt_logprobs[k][row[k]].logprob) for k in range(start, len(row))]
    return Scored(nll=float(sum(nll)), token_nll=nll, length=len(nll))


def distinct(generate, rows: list[list[int]], params: list, work: Work) -> list:
    """`generate` of each distinct (row, request kind) once, outputs in the order of `rows`: a problem's N
    candidates repeat (the same answer sampled twice gives the same verifier query and teacher-forced row), and a
    repeated row would also read its whole self from the prefix cache, leaving no prompt logprobs to read."""
    key = [(tuple(r), p.prompt_logprobs, tuple(p.logprob_token_ids or ())) for r, p in zip(rows, params)]
    first = {k: i for i, k in reversed(list(enumerate(key)))}
    order = sorted(set(first.values()))
    sent = [rows[i] for i in order]
    done = generate(sent, [params[i] for i in order])
    work.add(sent, done)
    outs = dict(zip(order, done))
    return [outs[first[k]] for k in key]


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
