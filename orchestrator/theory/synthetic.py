"""Synthetic runs with a known truth: what the fit's interval coverage is measured on (docs/theory.md §6).

As a new user would make them: a random gap model inside docs/theory.md §2 (alpha > beta >= 0, positive limits and gap),
9-11 measured rounds, 1-2 % multiplicative noise on U_s and U_v. numpy only.
"""
from __future__ import annotations

import numpy as np

from orchestrator.theory.model import GapModel


def replicate(rng: np.random.Generator) -> tuple[GapModel, np.ndarray, np.ndarray, np.ndarray]:
    """(true model, rounds, noisy U_s, noisy U_v) of one synthetic run."""
    U_v_inf = rng.uniform(1.0, 4.0)
    G_inf = rng.uniform(0.2, 1.0)
    ap = rng.uniform(1.0, 3.0)
    bp = ap * rng.uniform(0.2, 0.6)
    model = GapModel(rate=rng.uniform(0.2, 0.6), alpha_prime=ap, beta_prime=bp, U_s_inf=U_v_inf + G_inf,
                     U_v_inf=U_v_inf)
    n = int(rng.integers(9, 12))
    sigma = rng.uniform(0.01, 0.02)
    t = np.arange(n)
    s, v, _ = model.predict(t)
    return model, t, s * (1 + sigma * rng.standard_normal(n)), v * (1 + sigma * rng.standard_normal(n))


def truth(model: GapModel) -> dict[str, float]:
    """The true value of every quantity `svgap fit` reports an interval for."""
    return {"rate": model.rate, "alpha_prime": model.alpha_prime, "beta_prime": model.beta_prime,
            "delta": model.delta, "U_s_inf": model.U_s_inf, "U_v_inf": model.U_v_inf, "G_inf": model.G_inf,
            "alpha_over_beta": model.alpha_prime / model.beta_prime, "sensitivity": -model.beta_prime / model.delta,
            "rounds_to_eps": model.rounds_to_eps(0.05)}  # fit_gap's default eps


def coverage(replicates: int, n_boot: int = 200, seed: int = 0) -> dict:
    """Share of fits whose 95 % interval holds the truth, per reported quantity, over `replicates` runs."""
    from orchestrator.theory.fit import fit_gap

    rng = np.random.default_rng(seed)
    hits: dict[str, int] = {}
    have: dict[str, int] = {}
    verdicts: dict[str, int] = {}
    for i in range(replicates):
        model, t, s, v = replicate(rng)
        f = fit_gap(t, s, v, n_boot=n_boot, seed=i, backtest=False)
        if not f.decaying:
            key = f.verdict.split(":")[0]
            verdicts[key] = verdicts.get(key, 0) + 1
            continue
        for k, x in truth(model).items():
            lo, hi = f.ci.get(k) or [None, None]
            if lo is None or hi is None:
                continue
            have[k] = have.get(k, 0) + 1
            hits[k] = hits.get(k, 0) + (lo <= x <= hi)
    return {"coverage": {k: hits[k] / have[k] for k in have}, "fits": have, "verdicts": verdicts,
            "replicates": replicates, "n_boot": n_boot}
