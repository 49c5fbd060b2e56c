"""How the solver's uncertainty relates to its held-out accuracy (the paper's appendix; issue 22 item 6): per run, a
logistic link acc = 1 / (1 + exp(-(a - b U_s))) fitted to the rounds' (U_s, held-out accuracy), with its R² on the
accuracy scale and Spearman's rank correlation (a monotone link has rho_S near -1 when accuracy rises as U_s falls).

Why logistic: accuracy lives in [0, 1] and the appendix's relation is monotone in U_s; two parameters fit the few
rounds a run has. Rounds whose accuracy is 0 or 1 are kept (the least squares is on the accuracy scale). Where no
link can be fitted (fewer than MIN_ROUNDS rounds, U_s or accuracy constant, NaN) the answer says why instead.
numpy/scipy only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

MIN_ROUNDS = 3


@dataclass
class AccuracyLink:
    a: float | None
    b: float | None              # > 0: accuracy rises as U_s falls
    r2: float | None             # on the accuracy scale
    spearman: float | None
    n: int
    why: str = ""                # non-empty: no link, and why

    def to_json(self) -> dict:
        return {"form": "acc = 1/(1+exp(-(a - b U_s)))", **asdict(self)}

    def predict(self, U_s) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a - self.b * np.asarray(U_s, float))))


def _none(n: int, why: str) -> AccuracyLink:
    return AccuracyLink(None, None, None, None, n, why)


def fit_accuracy_link(U_s: Sequence[float], acc: Sequence[float]) -> AccuracyLink:
    """The logistic link of held-out accuracy to U_s over a run's rounds (module docstring)."""
    from scipy import optimize, stats

    x, y = np.asarray(U_s, float), np.asarray(acc, float)
    n = int(min(x.size, y.size))
    if x.size != y.size:
        return _none(n, f"{x.size} U_s values but {y.size} accuracies")
    if n < MIN_ROUNDS:
        return _none(n, f"too few rounds: {n} < {MIN_ROUNDS}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return _none(n, "U_s or the accuracy is NaN or infinite in some round")
    if ((y < 0) | (y > 1)).any():
        return _none(n, "an accuracy outside [0, 1]")
    if np.ptp(x) <= 1e-12 * max(1.0, abs(x).max()) or np.ptp(y) <= 1e-12:
        return _none(n, "U_s or the accuracy is constant over the rounds: no link to fit")
    p = np.clip(y, 0.01, 0.99)
    b0, a0 = np.polyfit(x, -np.log(1 / p - 1), 1)  # start: least squares on the logit scale
    try:
        (a, b), _ = optimize.curve_fit(lambda u, a, b: 1 / (1 + np.exp(-(a - b * u))), x, y, p0=(a0, -b0),
                                       maxfev=5000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        a, b = a0, -b0
    fitted = 1 / (1 + np.exp(-(a - b * x)))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(((y - fitted) ** 2).sum()) / ss_tot
    rho = float(stats.spearmanr(x, y).statistic)
    return AccuracyLink(float(a), float(b), r2, rho if math.isfinite(rho) else None, n)
