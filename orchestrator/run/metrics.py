"""How much room a model has to self-improve (docs/theory.md §1, measured once, before any training).

On a set of problems: sample N candidates each, check them, score them with the model's own verifier (TF and QE),
and report solver accuracy (one sample at the configured temperature, estimated over all N), pass@N, the
verifier's ROC-AUC between correct and incorrect candidates, the fraction of candidates below σ, and best-of-N
accuracy with the BoN rule -- plus the uncertainties U_s, U_v and the gap G of round 0.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from orchestrator.run.selection import BoNPick, best_of_n
from workloads import answers
from workloads.base import Problem

log = logging.getLogger(__name__)


def prompt_seed(seed: int, problem_id: str) -> int:
    """A prompt's sampling seed: a stable function of the run seed and the problem id."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{problem_id}".encode(), digest_size=8).digest(), "little") >> 1


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(score of a random correct > score of a random incorrect), ties counted half. NaN if one class is empty."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def mean(x) -> float:
    """The mean as a float, NaN when there is nothing to average."""
    x = np.asarray(x, dtype=np.float64)
    return float(x.mean()) if x.size else math.nan


def solver_metrics(nll, lengths, correct, capped) -> dict[str, float]:
    """The solver's side of a measurement (docs/theory.md §1), over P problems x N candidates (arrays P x N):
    U_s and U_s per token, mean length, one-sample accuracy, pass@N, and the share cut at max_new_tokens. A round
    and base-model evaluation compute these the same way, here."""
    nll, lengths = np.asarray(nll, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    return {"U_s": mean(nll), "U_s_per_token": mean(nll / np.maximum(lengths, 1)), "len_s": mean(lengths),
            "acc_s": mean(correct), "pass_at_n": mean(correct.any(axis=1)) if correct.size else math.nan,
            "capped_share": mean(capped)}


def pick_metrics(nll, lengths, correct, capped, picks: Sequence[BoNPick]) -> dict[str, float]:
    """The verifier's side: the same quantities over each problem's BoN pick (U_v, its per-token value, length,
    accuracy, capped share) and the share of problems where no candidate reached σ (fallback)."""
    rows, k = np.arange(len(picks)), np.array([p.index for p in picks], dtype=int)

    def picked(a) -> np.ndarray:
        return np.asarray(a, dtype=np.float64)[rows, k] if len(picks) else np.zeros(0)

    nll_v, len_v = picked(nll), picked(lengths)
    return {"U_v": mean(nll_v), "U_v_per_token": mean(nll_v / np.maximum(len_v, 1)), "len_v": mean(len_v),
            "acc_v": mean(picked(correct)), "capped_share_v": mean(picked(capped)),
            "fallback_rate": sum(p.fallback for p in picks) / max(len(picks), 1)}


def verifier_quality(scores: Sequence[float], correct: Sequence[bool], threshold: float,
                     checks_answers: bool = True) -> dict[str, float]:
    """A round's verifier quality: the share of candidates whose score passes σ and, where the workload checks
    answers and both correct and incorrect candidates exist, the ROC-AUC of s between them (left out otherwise:
    undefined, not 0.5) -- whether self-training sharpens or erodes the model's own verifier."""
    s = np.asarray(scores, dtype=np.float64)
    out = {"share_passing": float((s >= threshold).mean()) if len(s) else math.nan}
    if checks_answers:
        auc = roc_auc(s, correct)
        if not math.isnan(auc):
            out["verifier_auc"] = auc
    return out


def problem_bootstrap(correct: np.ndarray, scores: dict[str, np.ndarray], bon: dict[str, np.ndarray],
                      reps: int = 1000, seed: int = 0) -> dict[str, list[float]]:
    """95 % percentile intervals by resampling problems (a problem's N candidates move together: they share a
    prompt, so resampling candidates would understate the spread): solver accuracy, pass@N, and per verifier
    method its ROC-AUC and BoN accuracy (`bon[m]` = correctness of each problem's pick)."""
    rng = np.random.default_rng(seed)
    p = correct.shape[0]
    draws: dict[str, list[float]] = {"solver_accuracy": [], "pass_at_n": []}
    for m in scores:
        draws[f"{m}_auc"], draws[f"{m}_bon_accuracy"] = [], []
    for _ in range(reps):
        idx = rng.integers(0, p, p)
        c = correct[idx]
        draws["solver_accuracy"].append(c.mean())
        draws["pass_at_n"].append(c.any(axis=1).mean())
        for m, s in scores.items():
            draws[f"{m}_auc"].append(roc_auc(s[idx].ravel(), c.ravel()))
            draws[f"{m}_bon_accuracy"].append(bon[m][idx].mean())
    out = {}
    for k, v in draws.items():
        x = np.asarray(v, dtype=np.float64)
        x = x[np.isfinite(x)]  # an AUC is undefined in a resample with one class only
        out[k] = [float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5))] if x.size else [math.nan, math.nan]
    return out


def _parsed_share(texts: list[str]) -> float:
    """Of the texts that write a number at all, the share whose final answer the extractor finds (a text without
    one -- "To solve this, we need to" -- states no answer: nothing to parse)."""
    with_number = [t for t in texts if any(ch.isdigit() for ch in t)]
    return float(np.mean([answers.extract(t) is not None for t in with_number])) if with_number else float("nan")


@dataclass
class VerifierEval:
    auc: float  # ROC-AUC of s between correct and incorrect candidates
    below_threshold: float  # fraction of candidates with s < σ
    bon_accuracy: float  # accuracy of the BoN pick (σ rule of docs/theory.md §1)
    fallback_rate: float  # fraction of prompts where no candidate reached σ
    mean_score_correct: float
    mean_score_incorrect: float
    u_v: float  # mean total NLL of the BoN picks


@dataclass
class BaseEval:
    prompts: int
    n: int
    temperature: float
    threshold: float
    solver_accuracy: float  # mean correctness over all candidates = one-sample accuracy
    pass_at_n: float
    u_s: float  # mean total NLL of a sampled candidate
    u_s_per_token: float
    mean_length: float
    nll_pick_accuracy: float  # lowest NLL/L among all N, no verifier: what the verifier adds is bon - this
    verifiers: dict[str, VerifierEval] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)  # 95 %, problems resampled
    capped_share: float = 0.0  # candidates cut off at max_new_tokens
    answered_share: float = 0.0  # candidates in which workloads/answers.py finds a final answer
    parsed_share: float = 0.0  # of the candidates that write any number, those the extractor takes an answer from

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(backend, workload, problems: list[Problem], *, n: int = 8, temperature: float = 1.0,
             max_new_tokens: int = 8, threshold: float = 0.5, seed: int = 0, methods: Sequence[str] = ("tf", "qe"),
             batch_size: int = 512) -> BaseEval:
    """Measure a model (an HFBackend) on `problems` of `workload`; each stage's end is logged."""
    t0 = time.monotonic()
    seeds = [prompt_seed(seed, p.id) for p in problems]
    cands = backend.sample([p.prompt for p in problems], n, temperature, max_new_tokens, seeds, batch_size)
    t_sample = time.monotonic() - t0
    log.info(f"sampled {len(problems)} x {n} candidates in {t_sample:.0f} s")
    correct = np.array([[workload.check(p, c.text) for c in cs] for p, cs in zip(problems, cands)], dtype=bool)
    nll = np.array([[c.nll for c in cs] for cs in cands])
    lengths = np.array([[c.length for c in cs] for cs in cands])
    capped = np.array([[not c.finished for c in cs] for cs in cands], dtype=bool)
    flat = [(p, c) for p, cs in zip(problems, cands) for c in cs]
    verifiers: dict[str, VerifierEval] = {}
    seconds = {"sample": t_sample}
    all_scores: dict[str, np.ndarray] = {}
    bon_correct: dict[str, np.ndarray] = {}
    for method in methods:
        t1 = time.monotonic()
        if method == "tf":
            s = backend.tf_score([workload.tf_query(p, c.text) for p, c in flat], batch_size)
        elif method == "qe":
            s = backend.qe_score([workload.qe_query(p, c.text) for p, c in flat], batch_size)
        else:
            raise ValueError(f"unknown verification method {method!r}")
        seconds[method] = time.monotonic() - t1
        log.info(f"{method.upper()} verifier scored {len(flat)} candidates in {seconds[method]:.0f} s")
        scores = np.asarray(s).reshape(len(problems), n)
        picks = [best_of_n(scores[i], nll[i], lengths[i], threshold) for i in range(len(problems))]
        ok = correct.ravel()
        sc = scores.ravel()
        all_scores[method] = scores
        bon_correct[method] = np.array([correct[i, k.index] for i, k in enumerate(picks)], dtype=bool)
        picked = pick_metrics(nll, lengths, correct, capped, picks)
        verifiers[method] = VerifierEval(
            auc=roc_auc(sc, ok),
            below_threshold=float((sc < threshold).mean()),
            bon_accuracy=picked["acc_v"],
            fallback_rate=picked["fallback_rate"],
            mean_score_correct=float(sc[ok].mean()) if ok.any() else math.nan,
            mean_score_incorrect=float(sc[~ok].mean()) if (~ok).any() else math.nan,
            u_v=picked["U_v"],
        )
    nll_pick = (nll / np.maximum(lengths, 1)).argmin(axis=1)
    solver = solver_metrics(nll, lengths, correct, capped)
    return BaseEval(
        prompts=len(problems), n=n, temperature=temperature, threshold=threshold,
        solver_accuracy=solver["acc_s"], pass_at_n=solver["pass_at_n"],
        u_s=solver["U_s"], u_s_per_token=solver["U_s_per_token"], mean_length=solver["len_s"],
        nll_pick_accuracy=float(correct[np.arange(len(problems)), nll_pick].mean()),
        verifiers=verifiers, seconds={k: round(v, 2) for k, v in seconds.items()},
        intervals=problem_bootstrap(correct, all_scores, bon_correct, seed=seed),
        capped_share=solver["capped_share"],
        answered_share=float(np.mean([answers.extract(c.text) is not None for cs in cands for c in cs])),
        parsed_share=_parsed_share([c.text for cs in cands for c in cs]),
    )
