"""Today's online stop rule (before issue 22) on the same simulated runs: fit_gap's point limit, stop when the
measured U_s(T) - U_s,inf < eps (orchestrator/run/online_fit.py). Slow (one fit per run and round): a subset."""
from __future__ import annotations

import numpy as np
from decisions_sim import models, noisy, paths, sweep

from orchestrator.theory.fit import fit_gap

N_MAX, EPS_SHARE = 12, 0.05


def today_point_rule(rng, runs: int) -> dict:
    false = stopped = 0
    per = max(runs // 8, 1)
    for rho in (0.0, 0.5):
        for sigma in (0.01, 0.02, 0.03, 0.04):
            m = models(rng, per)
            S, V, gain = paths(m, N_MAX)
            Sn, Vn = noisy(rng, S, V, sigma, rho)
            N = rng.integers(5, N_MAX + 1, per)
            for i in range(per):
                eps = EPS_SHARE * m["U_s_inf"][i]
                for T in range(3, int(N[i]) - 1):
                    f = fit_gap(np.arange(T + 1), Sn[i, :T + 1], Vn[i, :T + 1], n_boot=0, backtest=False)
                    if f.decaying and Sn[i, T] - f.U_s_inf < eps:
                        stopped += 1
                        false += bool(gain[i, T] >= eps)
                        break
    return {"runs": per * 8, "stopped": stopped, "false_stops": false, "false_stop_rate": false / (per * 8)}


def today_tune(rng, sweeps: int) -> dict:
    """The sweep's stop rule as the studies run it (studies/theory_stop.TheoryStopRule, on theory/trial_compare.py
    since issue 22) on the sweeps of benchmarks/decisions.py: wrong stop = the trial with the best true limit
    stopped."""
    from orchestrator.studies.theory_stop import TheoryStopRule

    wrong = stopped = 0
    per = max(sweeps // 8, 1)
    for rho in (0.0, 0.5):
        for sigma in (0.01, 0.02, 0.03, 0.04):
            for _ in range(per):
                Sn, Vn, best, N = sweep(rng, sigma, rho)
                rule, running = TheoryStopRule(min_rounds=5), set(range(len(Sn)))
                for n in range(5, N):
                    for i in sorted(running):
                        rule.observe(str(i), [{"round": t, "U_s": float(Sn[i, t]), "U_v": float(Vn[i, t])}
                                              for t in range(n)])
                    running -= {i for i in sorted(running) if rule.decide(str(i), n - 1, N - 1)}
                wrong += best not in running
                stopped += len(Sn) - len(running)
    return {"sweeps": per * 8, "wrong_stop_rate": wrong / (per * 8), "stopped_share": stopped / (per * 8 * 6)}
