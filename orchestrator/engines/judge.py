"""Verifier queries as rows of token ids, and the reads that turn the rows' logits into scores (the HF engine's TF
and QE, docs/theory.md §1).

A verifier word -- TF's true/false word, a QE grade -- may be several tokens. Its probability is the product of its
tokens' probabilities (the chain rule: exact). The words' shared leading tokens (chat.word_tokens) cancel in every
ratio, so they are appended to the query once; after them each word is read token by token: the word the row goes
on with (TF: the true word, the chain rule of "every step is correct") in place, any other word of several tokens
on a short branch row (the query so far + that word). Single-token words need no branch: one next-token
distribution per judgment, as before.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from workloads.base import QEQuery, TFQuery

Read = tuple[int, int, int]  # (row, index into that row's read positions, the token whose log-probability is read)


class Reads:
    """Rows of token ids and, per row, the positions whose next-token logits are read (in read order)."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.where: list[list[int]] = []

    def row(self, ids: list[int]) -> int:
        self.rows.append(list(ids))
        self.where.append([])
        return len(self.rows) - 1

    def at(self, r: int, pos: int, tok: int) -> Read:
        self.where[r].append(pos)
        return r, len(self.where[r]) - 1, tok

    def judgment(self, r: int, tails: list[list[int]], follow: int | None) -> list[list[Read]]:
        """Reads of each word's tokens after the current end of row r; then row r goes on with word `follow`."""
        row = self.rows[r]
        pos = len(row) - 1
        out = []
        for w, tail in enumerate(tails):
            reads = [self.at(r, pos, tail[0])]
            if len(tail) > 1:
                b = r if w == follow else self.row(row[:pos + 1] + tail)
                reads += [self.at(b, pos + j, tail[j]) for j in range(1, len(tail))]
            out.append(reads)
        if follow is not None:
            row += tails[follow]
        return out


Words = Callable[[tuple[str, ...], str], tuple[list[int], list[list[int]]]]
Encode = Callable[[list[str]], list[list[int]]]


def tf_plan(queries: list[TFQuery], opening: Encode, plain: Encode, words: Words) -> tuple[Reads, list]:
    """One row per query: segment 0 (a conversation opening), then each later segment; after every segment the
    words' shared prefix and a judgment, the row going on with the true word."""
    if any(not q.segments for q in queries):
        raise ValueError("TFQuery needs at least one segment")
    firsts = opening([q.segments[0] for q in queries])
    rests = iter(plain([seg for q in queries for seg in q.segments[1:]]))
    reads, plans = Reads(), []
    for q, first in zip(queries, firsts):
        prefix, tails = words((q.true_token, q.false_token), "TF words")
        r = reads.row(list(first) + prefix)
        judgments = [reads.judgment(r, tails, follow=0)]
        for _ in q.segments[1:]:
            reads.rows[r] += next(rests) + prefix
            judgments.append(reads.judgment(r, tails, follow=0))
        plans.append(judgments)
    return reads, plans


def qe_plan(queries: list[QEQuery], opening: Encode, plain: Encode, words: Words) -> tuple[Reads, list]:
    """One row per query (a conversation opening + the grades' shared prefix); one judgment over the grades."""
    if any(len(q.grade_tokens) < 2 for q in queries):
        raise ValueError("QEQuery needs at least two grade tokens")
    reads, plans = Reads(), []
    for q, ids in zip(queries, opening([q.text for q in queries])):
        prefix, tails = words(tuple(q.grade_tokens), "QE grade tokens")
        r = reads.row(list(ids) + prefix)
        plans.append([reads.judgment(r, tails, follow=None)])
    return reads, plans


def _read_values(plans: list, logits: list[torch.Tensor]) -> list[float]:
    """log P(token) of every read of every plan, in plan order: one log-softmax over all rows' kept logits and
    one gather (per-judgment tensor calls cost more than the forward of a small model)."""
    reads = [read for judgments in plans for judgment in judgments for word in judgment for read in word]
    if not reads:
        return []
    rows = list(dict.fromkeys(r for r, _, _ in reads))
    offset, at = {}, 0
    for r in rows:
        offset[r] = at
        at += logits[r].shape[0]
    lsm = torch.log_softmax(torch.cat([logits[r] for r in rows]).float(), -1)
    flat = torch.tensor([offset[r] + k for r, k, _ in reads], dtype=torch.long, device=lsm.device)
    tok = torch.tensor([t for _, _, t in reads], dtype=torch.long, device=lsm.device)
    return lsm[flat, tok].tolist()


def _word_logps(plans: list, logits: list[torch.Tensor]) -> list[list[list[float]]]:
    """Per plan, per judgment, log P(word) of each word: the sum of its tokens' log-probabilities."""
    values = iter(_read_values(plans, logits))
    return [[[sum(next(values) for _ in word) for word in judgment] for judgment in judgments]
            for judgments in plans]


def _logsigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def tf_scores(plans: list, logits: list[torch.Tensor]) -> list[float]:
    """s = prod_k P_k(true word) / (P_k(true word) + P_k(false word))."""
    return [math.exp(sum(_logsigmoid(lp[0] - lp[1]) for lp in judgments)) for judgments in _word_logps(plans, logits)]


def qe_scores(plans: list, logits: list[torch.Tensor]) -> list[float]:
    """s = E[grade] / max grade, grade g with probability P(word g) / sum over grades."""
    out = []
    for (lp,) in _word_logps(plans, logits):
        top = max(lp)
        w = [math.exp(x - top) for x in lp]
        out.append(sum(g * x for g, x in enumerate(w)) / sum(w) / (len(lp) - 1))
    return out
