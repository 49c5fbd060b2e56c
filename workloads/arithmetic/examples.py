"""Pretraining examples of the arithmetic workload, as token ids with the positions the loss covers.

    solve  <bos>805+769=5741<eos>                loss on the answer and <eos>
    TF     <bos>+?875T066T594T001T.T             loss on every judgment (the label, though the input always
                                                 holds T, as at query time) and on each candidate digit that is
                                                 right given the column before it (a dense signal for the sums)
    QE     <bos>+?875T066T594T001T.T#3           a TF example followed by '#' and the grade: loss on the grade too

Candidates are correct (30%) or corrupted like a solver's slips (see `corrupt`); the loss never covers a wrong digit.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from . import templates as T
from .options import ArithmeticOptions
from .problems import Batch, ProblemSpace
from .tokenizer import BOS, EOS, PAD, VOCAB


def ids(text: str) -> list[int]:
    """Same ids as the saved tokenizer gives for `text` without special tokens (one per character)."""
    return [VOCAB[c] for c in text]


@dataclass
class Example:
    ids: list[int]
    targets: list[tuple[int, int]]  # (position, token id the model must predict there)


class ExampleMaker:
    """Draws examples from one band of the problem space ("pretrain" for training, "dev" for the stopping rule)."""

    def __init__(self, opts: ArithmeticOptions, seed: int, split: str = "pretrain"):
        self.opts = opts
        self.split = split
        self.space = ProblemSpace(opts)
        self.np_rng = np.random.default_rng([seed, 0xB17D])
        self.rng = random.Random(seed * 7919 + 17)

    def texts(self, n: int) -> list[tuple[str, str]]:
        """n (prompt, answer) pairs."""
        b: Batch = self.space.sample(self.np_rng, n, self.split)
        ops = self.opts.ops
        return [(self.space.prompt(int(x), ops[int(o)], int(y)), self.space.answer_text(int(x), ops[int(o)], int(y)))
                for x, y, o in zip(b.a, b.b, b.op)]

    def corrupt(self, answer: str, p_digit: float = 0.35) -> str:
        """A wrong candidate: each digit wrong with probability p_digit (+-1 like a carry slip, or any other
        digit), at least one; 6% of the time a digit too few or too many instead."""
        r = self.rng.random()
        if r < 0.06:
            return answer[:-1] if r < 0.03 else answer + str(self.rng.randrange(10))
        chars = list(answer)
        wrong = [k for k in range(len(chars)) if self.rng.random() < p_digit] or [self.rng.randrange(len(chars))]
        for k in wrong:
            step = self.rng.choice((-1, 1)) if self.rng.random() < 0.5 else self.rng.randrange(1, 10)
            chars[k] = str((int(chars[k]) + step) % 10)
        return "".join(chars)

    def candidate(self, answer: str) -> str:
        return answer if self.rng.random() < 0.3 else self.corrupt(answer)

    def solve(self, prompt: str, answer: str) -> Example:
        x = [VOCAB[BOS]] + ids(prompt) + ids(answer) + [VOCAB[EOS]]
        start = 1 + len(prompt)
        return Example(x, [(p, x[p]) for p in range(start, len(x))])

    def tf(self, prompt: str, answer: str, cand: str) -> Example:
        x = [VOCAB[BOS]]
        targets = []
        labels = T.step_labels(prompt, cand, len(answer))
        for k, seg in enumerate(T.tf_segments(prompt, cand, len(answer))):
            x += ids(seg)
            if k < len(cand) and labels[k]:
                targets.append((len(x) - 1, x[-1]))
            targets.append((len(x), VOCAB[T.TRUE if labels[k] else T.FALSE]))
            x.append(VOCAB[T.TRUE])  # the query always continues with T (chain rule), whatever the label
        return Example(x, targets)

    def qe(self, prompt: str, answer: str, cand: str) -> Example:
        """A TF example (same layout, same targets) followed by the grade mark and the grade."""
        e = self.tf(prompt, answer, cand)
        x = e.ids + [VOCAB[T.QE_MARK]]
        grade = T.grade_tokens(len(answer))[T.qe_grade(prompt, cand, len(answer))]
        return Example(x + [VOCAB[grade]], e.targets + [(len(x), VOCAB[grade])])

    def batch(self, n: int, verify_share: float) -> tuple[list[Example], list[Example]]:
        """(solving examples, verifying examples) -- kept apart so each pads only to its own length."""
        n_verify = round(n * verify_share)
        n_qe = round(n_verify * self.opts.qe_share)
        texts = self.texts(n)
        solve = [self.solve(p, a) for p, a in texts[: n - n_verify]]
        verify = []
        for i, (p, a) in enumerate(texts[n - n_verify:]):
            cand = self.candidate(a)
            verify.append(self.qe(p, a, cand) if i < n_qe else self.tf(p, a, cand))
        return solve, verify


def collate(examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded input ids and targets aligned with them (-100 where there is nothing to predict)."""
    L = max(len(e.ids) for e in examples)
    x = torch.full((len(examples), L), VOCAB[PAD], dtype=torch.long)
    y = torch.full((len(examples), L), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        x[i, : len(e.ids)] = torch.tensor(e.ids)
        for p, t in e.targets:
            y[i, p] = t
    return x, y
