"""Best-of-N selection, docs/theory.md §1.

Keep candidates whose verifier score s >= threshold σ; among them pick the lowest length-normalised uncertainty
U/L. If none passes σ, fall back to the highest-scoring candidate, and say so (the round counts fallbacks).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class BoNPick:
    index: int  # which candidate of the prompt's N
    fallback: bool  # True when no candidate reached the threshold


def best_of_n(scores: Sequence[float], nll: Sequence[float], lengths: Sequence[int], threshold: float) -> BoNPick:
    """The BoN pick among one prompt's candidates. Ties break towards the earlier candidate (deterministic)."""
    n = len(scores)
    if n == 0 or len(nll) != n or len(lengths) != n:
        raise ValueError(f"best_of_n needs equally long, non-empty inputs (got {n}, {len(nll)}, {len(lengths)})")
    passing = [i for i in range(n) if scores[i] >= threshold]
    if not passing:
        best = max(range(n), key=lambda i: (scores[i], -i))
        return BoNPick(best, True)
    per_token = [nll[i] / max(lengths[i], 1) for i in passing]
    k = min(range(len(passing)), key=lambda j: (per_token[j] if not math.isnan(per_token[j]) else math.inf, j))
    return BoNPick(passing[k], False)
