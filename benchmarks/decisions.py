"""How often the theory's decisions are wrong (issue 22): the online stop rule, the sweep's trial stop and the
intervals behind them, on simulated runs with a known truth (benchmarks/decisions_sim.py: Proposition 3.1 shapes,
rates 0.1-0.7, multiplicative noise 1-4 %, AR(1) rho 0 and 0.5, 5-12 rounds, with and without external data).

- online: after every round from the 4th, orchestrator/theory/decision.py's rule (stop only when the upper 95 % bound
  of the remaining gain is below eps; eps = 5 % of the run's true limit) against the point rule (predicted gain below
  eps). False stop: stopped while the true remaining gain was still >= eps. Power: share of (run, round) with
  >= 8 rounds, noise <= 2 % and a true remaining gain below eps - 3 % of the limit where the rule says stop.
- coverage: the 95 % profile intervals of U_s,inf, the rate and the remaining gain per (rounds, noise, rho).
- tune: sweeps of 6 trials with limits within 15 % (a quarter near their plateau from round 0); wrong stop: the trial
  with the best true limit is stopped.
- plan: ranking errors of `svgap plan` / `planned` (benchmarks/decisions_plan.py).

Writes benchmarks/results/decisions.json. Usage: python benchmarks/decisions.py [--runs 2000] [--plans 400] [--today]
(--today also measures today's point rule on orchestrator.theory.fit.fit_gap for a subset: slower).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from decisions_plan import plan_ranking, plan_report  # noqa: E402
from decisions_sim import external_jumps, models, noisy, paths, sweep  # noqa: E402

from orchestrator.theory.decision import STOP, rule  # noqa: E402
from orchestrator.theory.trial_compare import compare_trials  # noqa: E402
from orchestrator.theory.limit_interval import profile_batch  # noqa: E402

log = logging.getLogger("decisions")
NOISES, RHOS, N_MAX, EPS_SHARE, MARGIN = (0.01, 0.02, 0.03, 0.04), (0.0, 0.5), 12, 0.05, 0.03


def _runs(rng, B: int, sigma: float, rho: float, external: bool) -> dict:
    m = models(rng, B)
    jumps, pending = external_jumps(rng, B, N_MAX) if external else (None, np.zeros((B, N_MAX), bool))
    S, V, gain = paths(m, N_MAX, jumps)
    Sn, Vn = noisy(rng, S, V, sigma, rho)
    return {"m": m, "S": Sn, "V": Vn, "gain": gain, "pending": pending, "N": rng.integers(5, N_MAX + 1, B),
            "eps": EPS_SHARE * m["U_s_inf"]}


def _decisions(d: dict) -> tuple[np.ndarray, np.ndarray]:
    """(sound rule says stop, point rule says stop), (B, N_MAX) after each round T (columns < 3 stay False)."""
    B = d["S"].shape[0]
    sound, point = np.zeros((B, N_MAX), bool), np.zeros((B, N_MAX), bool)
    for n in range(4, N_MAX + 1):
        T = n - 1
        p = profile_batch(np.arange(n), d["S"][:, :n], d["V"][:, :n])
        for i in range(B):
            what, _, _, _ = rule(p, i, float(d["eps"][i]), T)
            sound[i, T] = what == STOP and not d["pending"][i, T]
        point[:, T] = (p.decay_p <= 0.05) & (p.gain >= 0) & (p.gain < d["eps"]) & ~d["pending"][:, T]
    return sound, point


def _online_stats(d: dict, says: np.ndarray) -> dict:
    """False stops, rounds saved: the run stops at the first round T < N - 1 where the rule says stop."""
    B = says.shape[0]
    T = np.arange(N_MAX)[None, :]
    live = says & (T < d["N"][:, None] - 1)
    stopped = live.any(1)
    t_stop = np.where(stopped, live.argmax(1), d["N"] - 1)
    gain_at = d["gain"][np.arange(B), t_stop]
    false = stopped & (gain_at >= d["eps"])
    return {"runs": int(B), "stopped": int(stopped.sum()), "false_stops": int(false.sum()),
            "false_stop_rate": float(false.mean()), "false_per_stop": float(false.sum() / max(stopped.sum(), 1)),
            "rounds_saved_mean": float((d["N"] - 1 - t_stop).mean())}


def _power(d: dict, says: np.ndarray, sigma: float) -> tuple[int, int]:
    """(plateaued (run, round) pairs with >= 8 rounds, how many the rule stops)."""
    if sigma > 0.02:
        return 0, 0
    T = np.arange(N_MAX)[None, :]
    plateau = (d["gain"] < d["eps"][:, None] - MARGIN * d["m"]["U_s_inf"][:, None]) & (T >= 7) & ~d["pending"]
    return int(plateau.sum()), int((plateau & says).sum())


def online(rng, runs: int) -> dict:
    cells, power = [], {}
    per = max(runs // (len(NOISES) * len(RHOS) * 2), 1)
    for external in (False, True):
        for rho in RHOS:
            for sigma in NOISES:
                d = _runs(rng, per, sigma, rho, external)
                sound, point = _decisions(d)
                row = {"noise": sigma, "rho": rho, "external": external, "sound": _online_stats(d, sound),
                       "point": _online_stats(d, point)}
                cells.append(row)
                have, hit = _power(d, sound, sigma)
                k = f"rho={rho}"
                power[k] = [power.get(k, [0, 0])[0] + have, power.get(k, [0, 0])[1] + hit]
    tot = {}
    for rule_name in ("sound", "point"):
        rows = [c[rule_name] for c in cells]
        runs_n = sum(r["runs"] for r in rows)
        tot[rule_name] = {"runs": runs_n, "false_stop_rate": sum(r["false_stops"] for r in rows) / runs_n,
                          "stopped_share": sum(r["stopped"] for r in rows) / runs_n,
                          "rounds_saved_mean": sum(r["rounds_saved_mean"] * r["runs"] for r in rows) / runs_n}
    pw = {k: {"pairs": v[0], "stopped": v[1], "power": v[1] / max(v[0], 1)} for k, v in power.items()}
    allp = [sum(v[0] for v in power.values()), sum(v[1] for v in power.values())]
    pw["all"] = {"pairs": allp[0], "stopped": allp[1], "power": allp[1] / max(allp[0], 1)}
    return {"cells": cells, "total": tot, "power": pw, "eps": f"{EPS_SHARE:g} x true U_s,inf"}


def coverage(rng, per_cell: int) -> list[dict]:
    """Coverage of the 95 % intervals where they are used: runs whose F-test says decaying."""
    rows = []
    for rho in RHOS:
        for n in range(4, N_MAX + 1):
            for sigma in NOISES:
                m = models(rng, per_cell, small_share=0.0)
                S, V, gain = paths(m, n)
                Sn, Vn = noisy(rng, S, V, sigma, rho)
                p = profile_batch(np.arange(n), Sn, Vn)
                used = p.decay_p <= 0.05
                lo, hi = p.U_s_inf_ci.T
                ident = used & np.isfinite(lo) & np.isfinite(hi)
                rid = used & p.rate_identified
                g = gain[:, -1]
                gid = used & np.isfinite(p.gain_ci[:, 1])
                cov = lambda ok, x, a, b: float(((a <= x) & (x <= b))[ok].mean()) if ok.any() else None  # noqa: E731
                rows.append({"rounds": n, "noise": sigma, "rho": rho, "decaying": float(used.mean()),
                             "fits": {"U_s_inf": int(ident.sum()), "rate": int(rid.sum()), "gain": int(gid.sum())},
                             "U_s_inf": cov(ident, m["U_s_inf"], lo, hi), "U_s_inf_identified": float(ident.mean()),
                             "rate": cov(rid, m["rate"], *p.rate_ci.T), "rate_identified": float(rid.mean()),
                             "gain": cov(gid, g, *p.gain_ci.T), "gain_identified": float(gid.mean())})
    return rows


def _sweep(rng, sigma: float, rho: float, K: int = 6) -> dict:
    """One sweep of K trials with the same rounds; trials stop by compare_trials after every round from the 5th."""
    Sn, Vn, best, N = sweep(rng, sigma, rho, K)
    running = set(range(K))
    for n in range(5, N):
        c = compare_trials({str(i): (np.arange(n), Sn[i, :n], Vn[i, :n]) for i in sorted(running)})
        running -= {int(k) for k, v in c.trials.items() if v.decision == STOP}
    return {"wrong": best not in running, "stopped": K - len(running), "trials": K}


def tune(rng, sweeps: int) -> list[dict]:
    rows = []
    per = max(sweeps // (len(NOISES) * len(RHOS)), 1)
    for rho in RHOS:
        for sigma in NOISES:
            res = [_sweep(rng, sigma, rho) for _ in range(per)]
            rows.append({"noise": sigma, "rho": rho, "sweeps": per,
                         "wrong_stop_rate": float(np.mean([r["wrong"] for r in res])),
                         "stopped_share": float(np.mean([r["stopped"] / r["trials"] for r in res]))})
    return rows


def _pct(x) -> str:
    return "   -" if x is None else f"{100 * x:4.0f}"


def acceptance(res: dict) -> str:
    """The issue's targets, measured: each line says met or NOT met."""
    on, cells = res["online"], [r for r in res["coverage"] if r["rounds"] >= 5]
    lines = []
    for q in ("U_s_inf", "rate", "gain"):
        vals = [r[q] for r in cells if r[q] is not None and r["fits"][q] >= 30]
        bad = [f"{r['rounds']}r/{100 * r['noise']:.0f}%/rho {r['rho']}: {100 * r[q]:.1f}%" for r in cells
               if r[q] is not None and r["fits"][q] >= 30 and not 0.90 <= r[q] <= 0.99]
        span = f"{100 * min(vals):.1f}-{100 * max(vals):.1f}%" if vals else "no cell has 30 fits"
        lines.append(f"  coverage {q} (rounds >= 5, cells with >= 30 fits): {span}"
                     f" -> {'met' if not bad else 'NOT met: ' + '; '.join(bad)}")
    fs, pw = on["total"]["sound"]["false_stop_rate"], on["power"]["all"]["power"]
    wrong = max(r["wrong_stop_rate"] for r in res["tune"])
    lines.append(f"  online false-stop {100 * fs:.1f}% (<= 5%: {'met' if fs <= 0.05 else 'NOT met'}); power "
                 f"{100 * pw:.0f}% (>= 50%: {'met' if pw >= 0.5 else 'NOT met'}); tune wrong stops <= "
                 f"{100 * wrong:.1f}% per cell (<= 5%: {'met' if wrong <= 0.05 else 'NOT met'})")
    return "acceptance (issue 22)\n" + "\n".join(lines)


def report(res: dict) -> str:
    on = res["online"]
    out = [f"online stop (eps = {on['eps']}; a run stops at the first round the rule says so, never its last)",
           f"  {'noise':>5} {'rho':>4} {'ext':>4} | {'sound: false':>12} {'stopped':>8} {'saved':>6} |"
           f" {'point: false':>12} {'stopped':>8} {'saved':>6}"]
    for c in on["cells"]:
        s, p = c["sound"], c["point"]
        out.append(f"  {100 * c['noise']:4.0f}% {c['rho']:4.1f} {'yes' if c['external'] else 'no':>4} | "
                   f"{_pct(s['false_stop_rate']):>11}% {_pct(s['stopped'] / s['runs']):>7}% "
                   f"{s['rounds_saved_mean']:6.2f} | {_pct(p['false_stop_rate']):>11}% "
                   f"{_pct(p['stopped'] / p['runs']):>7}% {p['rounds_saved_mean']:6.2f}")
    for k, v in on["total"].items():
        out.append(f"  all {k:>5}: false-stop rate {100 * v['false_stop_rate']:.1f}% of {v['runs']} runs, stopped "
                   f"{100 * v['stopped_share']:.0f}%, rounds saved {v['rounds_saved_mean']:.2f} per run")
    for k, v in on["power"].items():
        out.append(f"  power (plateaued, >= 8 rounds, noise <= 2%, {k}): {100 * v['power']:.0f}% of {v['pairs']}")
    out.append("coverage of the 95% intervals where used (decaying fits; 'id' = share with a bounded interval)")
    out.append(f"  {'rho':>4} {'rounds':>6} {'noise':>5} | {'U_s,inf':>7} {'id':>4} | {'rate':>5} {'id':>4} |"
               f" {'gain':>5} {'id':>4}")
    for r in res["coverage"]:
        out.append(f"  {r['rho']:4.1f} {r['rounds']:6d} {100 * r['noise']:4.0f}% | {_pct(r['U_s_inf']):>6}% "
                   f"{_pct(r['U_s_inf_identified']):>4} | {_pct(r['rate']):>4}% {_pct(r['rate_identified']):>4} | "
                   f"{_pct(r['gain']):>4}% {_pct(r['gain_identified']):>4}")
    out.append(acceptance(res))
    out.append("tune: 6 trials, limits within 15 %, Bonferroni-corrected limit intervals")
    for r in res["tune"]:
        out.append(f"  noise {100 * r['noise']:.0f}% rho {r['rho']:.1f}: wrong stops {100 * r['wrong_stop_rate']:.1f}%"
                   f" of {r['sweeps']} sweeps, trials stopped {100 * r['stopped_share']:.0f}%")
    if "plan" in res:
        out.extend(plan_report(res["plan"]))
    if "today" in res:
        t = res["today"]
        out.append(f"today's point rule (theory.fit.fit_gap, U_s(T) measured - U_s,inf < eps) on {t['runs']} runs: "
                   f"false-stop rate {100 * t['false_stop_rate']:.1f}%")
    if "today_tune" in res:
        t = res["today_tune"]
        out.append(f"the studies' tune rule end to end (studies/theory_stop.TheoryStopRule) on {t['sweeps']} sweeps: wrong stops "
                   f"{100 * t['wrong_stop_rate']:.1f}%, trials stopped {100 * t['stopped_share']:.0f}%")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=2000, help="online runs (split over noise, rho, external)")
    ap.add_argument("--per-cell", type=int, default=600, help="coverage runs per (rounds, noise, rho) cell")
    ap.add_argument("--sweeps", type=int, default=800, help="tune sweeps (split over noise and rho)")
    ap.add_argument("--plans", type=int, default=400, help="plan ranking runs (split over noise and rho; 0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--today", action="store_true", help="also today's point rule on fit_gap (slow)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    res = {"online": online(rng, a.runs), "coverage": coverage(rng, a.per_cell), "tune": tune(rng, a.sweeps)}
    if a.plans:
        res["plan"] = plan_ranking(rng, a.plans)
    if a.today:
        from decisions_today import today_point_rule, today_tune

        res["today"] = today_point_rule(rng, min(a.runs, 400))
        res["today_tune"] = today_tune(rng, min(a.sweeps, 160))
    res["seconds"] = time.perf_counter() - t0
    res["args"] = vars(a)
    log.info("%s\n%.0f s", report(res), res["seconds"])
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "decisions.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
