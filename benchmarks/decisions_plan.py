"""Plan ranking errors for benchmarks/decisions.py (issue 22): how often `svgap plan` / `external.strategy: planned`
ranks the allocations wrongly. Each simulated run: a warm-up of 5-8 noisy rounds without external data (Proposition
3.1 shapes, AR(1) noise), the gap fit of those rounds, the plan of early / uniform / late over the 6 rounds left with
the true gamma (0.2-1.0), its intervals (theory/intervals.py); the truth: the same plan on the true model from the
true state. Errors: the point best is not the true best; the plan says the best is distinguishable (significant)
and it is not the true best; the allocation `planned` takes (chosen) loses more than 1 % of the true limit."""
from __future__ import annotations

import numpy as np
from decisions_sim import models, noisy, paths

from orchestrator.errors import SvgapError
from orchestrator.theory.allocation import STRATEGIES, plan
from orchestrator.theory.fit import fit_gap
from orchestrator.theory.intervals import propagate, samples_from_rows, widening
from orchestrator.theory.model import GapModel

LEFT = 6


def _one(rng, sigma: float, rho: float) -> dict | None:
    m = models(rng, 1, small_share=0.0)
    true = GapModel(float(m["rate"][0]), float(m["alpha_prime"][0]), float(m["beta_prime"][0]),
                    float(m["U_s_inf"][0]), float(m["U_v_inf"][0]))
    gamma, w = float(rng.uniform(0.2, 1.0)), int(rng.integers(5, 9))
    S, V, _ = paths(m, w)
    Sn, Vn = noisy(rng, S, V, sigma, rho)
    try:
        fit = fit_gap(np.arange(w), Sn[0], Vn[0], n_boot=100, seed=int(rng.integers(1 << 30)), backtest=False)
    except SvgapError:
        return None
    if not fit.decaying:
        return None
    truth = plan(true, gamma, LEFT, list(STRATEGIES), start_round=w - 1)
    pl = plan(fit, gamma, LEFT, list(STRATEGIES), start_round=w - 1)
    if pl.best is None or truth.best is None:
        return None
    propagate(pl, samples_from_rows(fit.boot, gamma), widen=widening(fit.n_rounds))
    sig = bool((pl.comparison or {}).get("distinguishable"))
    lim = {k: truth.outcomes[k].U_s_inf for k in truth.outcomes}
    return {"point_wrong": pl.best != truth.best, "significant": sig, "significant_wrong": sig and pl.best != truth.best,
            "chosen_regret": (lim[pl.chosen] - lim[truth.best]) / true.U_s_inf}


def plan_ranking(rng, runs: int) -> list[dict]:
    rows = []
    per = max(runs // 4, 1)
    for rho in (0.0, 0.5):
        for sigma in (0.01, 0.03):
            res = [r for r in (_one(rng, sigma, rho) for _ in range(per)) if r is not None]
            n = max(len(res), 1)
            sig = sum(r["significant"] for r in res)
            rows.append({"noise": sigma, "rho": rho, "plans": len(res),
                         "point_wrong_rate": sum(r["point_wrong"] for r in res) / n,
                         "significant_share": sig / n,
                         "significant_wrong_rate": sum(r["significant_wrong"] for r in res) / n,
                         "wrong_per_significant": sum(r["significant_wrong"] for r in res) / max(sig, 1),
                         "chosen_regret_over_1pct": sum(r["chosen_regret"] > 0.01 for r in res) / n})
    return rows


def plan_report(rows: list[dict]) -> list[str]:
    out = [f"plan ranking (early/uniform/late over {LEFT} rounds after a 5-8 round warm-up, true gamma)"]
    for r in rows:
        out.append(f"  noise {100 * r['noise']:.0f}% rho {r['rho']:.1f}: {r['plans']} plans, point best wrong "
                   f"{100 * r['point_wrong_rate']:.1f}%, said significant {100 * r['significant_share']:.0f}% of "
                   f"which wrong {100 * r['wrong_per_significant']:.1f}%, chosen loses > 1 % of the limit "
                   f"{100 * r['chosen_regret_over_1pct']:.1f}%")
    return out
