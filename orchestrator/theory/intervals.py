"""How sure a plan is (docs/theory.md §5): the fit's bootstrap replicates (and gamma's uncertainty, where gamma was
fitted) are pushed through every strategy's simulation, giving a 95 % interval per strategy and a verdict on
whether the best can be told apart from the runner-up.

The rule: the best is distinguishable from the runner-up when their 95 % intervals do not overlap -- the predicted
gain of one allocation over the other is larger than what the fit knows about either outcome. (Why not the paired
difference: inside the model the order of the strategies is nearly fixed by its structure -- a multiplicative jump
is larger while U_v is larger -- so every replicate ranks them the same way, and a paired test would call a
difference of 0.001 nats "distinguishable". The paired interval and the share of replicates that agree with the
point ranking are reported as `difference_ci` and `same_order_share`.) When the best is not distinguishable,
`planned` takes `uniform`, the least committal allocation (no round is favoured on evidence the fit does not
have), and says so.

Intervals are percentile intervals widened around the point prediction by the same t(n-3)/z factor the fit uses;
a predicted uncertainty's interval stops at 0.
Replicates whose simulation has a verdict (outside the theory, a negative prediction) are left out and counted.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from orchestrator.theory.allocation import Plan, simulate
from orchestrator.theory.model import GapModel

LEAST_COMMITTAL = "uniform"


def widening(n_rounds: int, level: float = 0.95) -> float:
    """t(n-3)/z: the fit's small-sample widening for a fit on n_rounds rounds (1 when n_rounds is unknown)."""
    if n_rounds < 4:
        return 1.0
    z = stats.norm.ppf(0.5 + level / 2)
    return float(stats.t.ppf(0.5 + level / 2, n_rounds - 3) / z)


def samples_from_rows(rows: np.ndarray | None, gamma: float | np.ndarray) -> list[tuple[GapModel, float]]:
    """(model, gamma) pairs from bootstrap rows [rate, alpha', U_s_inf, beta', U_v_inf] (+ gamma per row when gamma
    is an array, else the one gamma); rows with a non-positive rate or gamma are dropped."""
    if rows is None or not len(rows):
        return []
    g = np.broadcast_to(np.asarray(gamma, float), (len(rows),))
    out = []
    for (r, ap, us, bp, uv), gi in zip(np.asarray(rows, float)[:, :5], g):
        if r > 0 and gi > 0 and all(math.isfinite(x) for x in (r, ap, us, bp, uv, gi)):
            out.append((GapModel(float(r), float(ap), float(bp), float(us), float(uv)), float(gi)))
    return out


def _interval(point: float, vals: np.ndarray, w: float, level: float,
              floor: float | None = None) -> list[float] | None:
    """Widened percentile interval around point; `floor` cuts the lower end at a physical bound."""
    vals = vals[np.isfinite(vals)]
    if vals.size < 10:
        return None
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(vals, q), np.percentile(vals, 100 - q)
    lo = point - w * (point - lo)
    return [float(lo if floor is None else max(lo, floor)), float(point + w * (hi - point))]


def _rank_significance(pl: Plan, ranked: list[str], key: str) -> None:
    """Every ranked strategy keeps whether its place is significant: shown worse than the best (its interval's
    lower end above the best's upper end) or not."""
    cb = pl.outcomes[ranked[0]].ci.get(key)
    pl.outcomes[ranked[0]].vs_best = "best"
    for k in ranked[1:]:
        ck = pl.outcomes[k].ci.get(key)
        pl.outcomes[k].vs_best = "shown worse" if cb and ck and ck[0] > cb[1] else "not shown worse"


def propagate(pl: Plan, samples: list[tuple[GapModel, float]], *, U_s0: float | None = None,
              U_v0: float | None = None, widen: float = 1.0, level: float = 0.95) -> Plan:
    """Fill each outcome's `ci`, the plan's `comparison` and `chosen`/`why` from the samples (in place)."""
    if pl.best is None or not samples:
        if pl.best is not None:
            pl.why += "; no bootstrap replicates to judge how sure this is"
        return pl
    kw = dict(start_round=pl.start_round, U_s0=U_s0, U_v0=U_v0)
    keys = ("U_s_T", "U_s_inf")
    vals: dict[str, dict[str, np.ndarray]] = {}
    for name, eta in pl.shares.items():
        outs = [simulate(m, g, eta, **kw) for m, g in samples]
        vals[name] = {k: np.asarray([np.nan if getattr(o, k) is None else getattr(o, k) for o in outs], float)
                      for k in keys}
        o = pl.outcomes[name]
        if o.verdict is None:
            o.ci = {k: _interval(getattr(o, k), vals[name][k], widen, level, floor=0.0) for k in keys}
            o.impossible_share = float(np.mean(~np.isfinite(vals[name]["U_s_inf"])))
    key = "U_s_inf" if pl.objective == "limit" else "U_s_T"
    ranked = sorted((k for k in pl.outcomes if pl.outcomes[k].verdict is None), key=lambda k: pl.key(pl.outcomes[k]))
    best = ranked[0]
    comp: dict = {"best": best, "runner_up": None, "key": key, "level": level, "samples": len(samples),
                  "difference": None, "difference_ci": None, "same_order_share": None, "intervals_overlap": None,
                  "distinguishable": None}
    pl.comparison = comp
    _rank_significance(pl, ranked, key)
    if len(ranked) < 2:
        pl.why += "; no runner-up to compare with"
        return pl
    run = ranked[1]
    ob, orun = pl.outcomes[best], pl.outcomes[run]
    diff = vals[run][key] - vals[best][key]
    point = pl.key(orun) - pl.key(ob)
    both = np.isfinite(diff)
    comp.update(runner_up=run, difference=point, difference_ci=_interval(point, diff, widen, level),
                same_order_share=float(np.mean(diff[both] > 0)) if both.any() else None)
    cb, cr = ob.ci.get(key), orun.ci.get(key)
    label = "U_s,inf" if key == "U_s_inf" else "U_s(T)"
    if not (cb and cr):
        comp["distinguishable"] = False
        detail = f"too few replicates give a physical prediction for both {best} and {run} to compare them"
    else:
        comp["intervals_overlap"] = bool(cb[1] >= cr[0])
        comp["distinguishable"] = not comp["intervals_overlap"]
        detail = (f"{label} {best} {pl.key(ob):.4g} [{cb[0]:.4g}, {cb[1]:.4g}] vs {run} {pl.key(orun):.4g} "
                  f"[{cr[0]:.4g}, {cr[1]:.4g}], {100 * level:g}% intervals")
    if comp["distinguishable"]:
        pl.chosen = best
        pl.why = f"{best} is best and distinguishable from {run} under the fit: {detail} do not overlap"
    else:
        pl.chosen = LEAST_COMMITTAL if LEAST_COMMITTAL in ranked else best
        pl.why = (f"{best} and {run} are indistinguishable under the fit ({detail}"
                  f"{' overlap' if comp['intervals_overlap'] else ''}); choosing {pl.chosen}, "
                  + ("the least committal allocation" if pl.chosen == LEAST_COMMITTAL
                     else "the point best (uniform is not among the candidates)"))
    return pl
