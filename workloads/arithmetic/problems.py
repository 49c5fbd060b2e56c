"""Seeded synthetic problems `a op b=` with answers reversed and zero-padded (least significant digit first).

The split of a problem is a fixed function of its operands (a hash), so the train, held-out and external sets never
share a problem, whatever the seeds. The external split (a band of EXTERNAL_FRACTION of the problems) is the pool
external data comes from (docs/theory.md §5: a stronger source's answers), so no external example is ever one of a round's
train prompts or a held-out prompt. A thin band of the train split ("dev") is kept out of pretraining: the builder
watches its accuracy to decide when to stop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.errors import SvgapError
from workloads.base import Problem

from .options import ArithmeticOptions

DEV_FRACTION = 0.01
EXTERNAL_FRACTION = 0.05  # u in [1 - EXTERNAL_FRACTION, 1): external data only, never a round's train prompt
SPLITS = ("train", "heldout", "external")
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
    return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class Batch:
    """Vectorised problems: operands, operator index into `ops`, and which hash band each falls in."""
    a: np.ndarray
    b: np.ndarray
    op: np.ndarray


class ProblemSpace:
    """All d-digit problems of the configured operators, with their split."""

    def __init__(self, opts: ArithmeticOptions):
        self.opts = opts
        self.d = opts.digits
        self.lo = 0 if self.d == 1 else 10 ** (self.d - 1)
        self.hi = 10 ** self.d
        self.width = self.d + 1  # answer characters

    # -- vectorised core ------------------------------------------------------------------------------------------
    def band(self, a: np.ndarray, b: np.ndarray, op: np.ndarray) -> np.ndarray:
        """u in [0, 1): a fixed pseudo-random number per problem. u < heldout_fraction -> held-out."""
        key = (op.astype(np.uint64) * np.uint64(self.hi) + a.astype(np.uint64)) * np.uint64(self.hi) \
            + b.astype(np.uint64)
        with np.errstate(over="ignore"):
            h = _splitmix64(key ^ np.uint64(0x5EED5EED))
        return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)

    def draw(self, rng: np.random.Generator, n: int) -> Batch:
        """n raw problems (any split); subtraction is ordered so that a >= b."""
        a = rng.integers(self.lo, self.hi, size=n)
        b = rng.integers(self.lo, self.hi, size=n)
        op = rng.integers(0, len(self.opts.ops), size=n)
        minus = np.array([o == "-" for o in self.opts.ops])[op]
        a, b = np.where(minus & (a < b), b, a), np.where(minus & (a < b), a, b)
        return Batch(a, b, op)

    def in_split(self, batch: Batch, split: str) -> np.ndarray:
        u = self.band(batch.a, batch.b, batch.op)
        f = self.opts.heldout_fraction
        if split == "heldout":
            return u < f
        ext = u >= 1.0 - EXTERNAL_FRACTION
        if split == "train":
            return (u >= f) & ~ext
        if split == "external":
            return ext
        if split == "dev":
            return (u >= f) & (u < f + DEV_FRACTION)
        if split == "pretrain":
            return u >= f + DEV_FRACTION
        raise SvgapError(f"unknown split {split!r} (choose one of {', '.join(SPLITS)})")

    def answers(self, batch: Batch) -> np.ndarray:
        """Integer results (a + b or a - b)."""
        minus = np.array([o == "-" for o in self.opts.ops])[batch.op]
        return np.where(minus, batch.a - batch.b, batch.a + batch.b)

    def answer_digits(self, batch: Batch) -> np.ndarray:
        """[n, width] answer digits, least significant first."""
        r = self.answers(batch)
        return np.stack([(r // 10 ** k) % 10 for k in range(self.width)], axis=1)

    def sample(self, rng: np.random.Generator, n: int, split: str) -> Batch:
        """n problems of `split` (with repetition possible; used for pretraining streams)."""
        parts: list[Batch] = []
        have = 0
        while have < n:
            raw = self.draw(rng, 2 * (n - have) + 16)
            keep = self.in_split(raw, split)
            parts.append(Batch(raw.a[keep], raw.b[keep], raw.op[keep]))
            have += int(keep.sum())
        cat = [np.concatenate([getattr(p, f) for p in parts])[:n] for f in ("a", "b", "op")]
        return Batch(*cat)

    # -- Problem objects --------------------------------------------------------------------------------------------
    def prompt(self, a: int, op: str, b: int) -> str:
        """Operands least significant digit first, like the answer: '508+967' is written '805+769='."""
        return f"{str(a).zfill(self.d)[::-1]}{op}{str(b).zfill(self.d)[::-1]}="

    def answer_text(self, a: int, op: str, b: int) -> str:
        r = a + b if op == "+" else a - b
        return str(r).zfill(self.width)[::-1]

    def problem(self, a: int, op: str, b: int) -> Problem:
        return Problem(id=f"{a}{op}{b}", prompt=self.prompt(a, op, b), answer=self.answer_text(a, op, b))

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        """n distinct seeded problems of one split (same seed and split -> same list)."""
        if split not in SPLITS:
            raise SvgapError(f"unknown split {split!r} (choose one of {', '.join(SPLITS)})")
        if n < 0:
            raise SvgapError(f"number of problems must be >= 0, got {n}")
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, SPLITS.index(split), 0xA417])
        out: list[Problem] = []
        seen: set[str] = set()
        for _ in range(1000):
            if len(out) >= n:
                break
            raw = self.draw(rng, max(64, 2 * (n - len(out))))
            keep = self.in_split(raw, split)
            for a, b, o in zip(raw.a[keep], raw.b[keep], raw.op[keep]):
                p = self.problem(int(a), self.opts.ops[int(o)], int(b))
                if p.id not in seen:
                    seen.add(p.id)
                    out.append(p)
                    if len(out) == n:
                        break
        if len(out) < n:
            raise SvgapError(f"only {len(out)} distinct {split} problems exist for digits={self.d}, "
                             f"ops={self.opts.ops}; asked for {n}")
        return out

    def parse_id(self, problem_id: str) -> tuple[int, str, int]:
        for op in ("+", "-"):
            left, sep, right = problem_id.partition(op)
            if sep and left.isdigit() and right.isdigit():
                return int(left), op, int(right)
        raise SvgapError(f"not an arithmetic problem id: {problem_id!r}")
