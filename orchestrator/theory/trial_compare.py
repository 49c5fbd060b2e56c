"""The sweep's theory stop on the decision interface (docs/theory.md §2, docs/decisions.md): which trials are shown,
with intervals corrected for the number of trials compared (Bonferroni), not to reach the best trial's limit.

Why: picking the best of many noisy trials and stopping the rest on point predictions stops the trial that would
have won (winner's curse); a `no decay` fit is no prediction unless the series is shown flat; trials whose scores
are measured differently (generation.temperature, max_new_tokens, N, workload, eval set) have U on different
scales; a trial still to receive external data will move. Pure: no Ray, no MLflow, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from orchestrator.theory.decision import (CONTINUE, DECAY_ALPHA, MIN_ROUNDS, STOP, UNDETERMINED, _num, _series,
                                          flat_gain_upper)
from orchestrator.theory.limit_interval import profile_batch



@dataclass
class TrialDecision:
    """One trial's verdict in a comparison: its limit interval at the corrected level, and why."""

    decision: str                 # stop | continue | undetermined
    limit: float | None           # predicted U_s,inf (lower = stronger solver); a flat trial's level
    limit_ci: list                # [lo, hi] at Comparison.interval_level (None: unbounded)
    reason: str

    def to_json(self) -> dict:
        return {"decision": self.decision, "limit": _num(self.limit), "limit_ci": [_num(x) for x in self.limit_ci],
                "reason": self.reason}


@dataclass
class Comparison:
    trials: dict[str, TrialDecision]
    interval_level: float         # each interval's level: 1 - (1 - level) / m (Bonferroni over m compared trials)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"trials": {k: v.to_json() for k, v in self.trials.items()},
                "interval_level": self.interval_level, "notes": list(self.notes)}


def trial_limit(rounds: Sequence, U_s: Sequence, U_v: Sequence, level: float) -> tuple[float, float, float] | str:
    """(limit, lo, hi) of one trial's U_s,inf at `level`, or why there is none. A decaying trial: the profile
    interval (lo -inf when the rate is not identified); a non-decaying one is a prediction only when it is not
    still falling (straight-line slope, one-sided p > DECAY_ALPHA): then its level, lowered by the most it may
    still fall (flat_gain_upper), with the level's own t interval."""
    from scipy import stats

    checked = _series(rounds, U_s, U_v) if len(rounds) >= MIN_ROUNDS else f"too few rounds ({len(rounds)})"
    if isinstance(checked, str):
        return checked
    t, S, V = checked
    p = profile_batch(t, S[None], V[None], level=level)
    if p.decay_p[0] <= DECAY_ALPHA:
        if p.gain[0] < 0:
            return "U_s rises over the rounds: outside the theory, no limit"
        return float(p.U_s_inf[0]), float(p.U_s_inf_ci[0, 0]), float(p.U_s_inf_ci[0, 1])
    if p.slope_p[0] < DECAY_ALPHA:
        return (f"no decay shown (F-test p = {p.decay_p[0]:.2f}) but U_s still falls (straight line, p = "
                f"{p.slope_p[0]:.3f}): not shown flat, so no prediction yet")
    n = t.size
    line = np.polyval(np.polyfit(t, S, 1), t)
    se = math.sqrt(float(((S - line) ** 2).sum()) / (n - 2) / min(3, n))
    q = float(stats.t.ppf(1 - (1 - level) / 2, n - 2))
    lvl = float(p.level[0])
    return lvl, lvl - float(flat_gain_upper(p)[0]) - q * se, lvl + q * se


def _scoring_notes(scoring: dict, keys: list[str]) -> tuple[dict[str, tuple], list[str]]:
    """Group key per trial from its scoring settings, and one note naming the settings that differ."""
    group = {k: tuple(sorted((str(a), repr(b)) for a, b in (scoring.get(k) or {}).items())) for k in keys}
    names = sorted({a for k in keys for a in (scoring.get(k) or {})})
    differ = [a for a in names if len({repr((scoring.get(k) or {}).get(a)) for k in keys}) > 1]
    notes = []
    if differ:
        notes.append(f"trials differ in scoring setting(s) {', '.join(differ)}: their U are not comparable, so a "
                     f"trial is compared only with trials of the same settings")
    return group, notes


def compare_trials(trials: dict, *, level: float = 0.95, scoring: dict | None = None,
                   external_pending: dict | None = None) -> Comparison:
    """Which trials are shown not to reach the best trial's limit (lower U_s,inf = better).

    trials: key -> (rounds, U_s, U_v). A trial is stopped only when the lower end of its limit interval lies above
    the upper end of another comparable trial's: with m trials compared every interval has level 1 - (1-level)/m
    (Bonferroni), so all m cover together with probability >= level and then the best trial is never stopped.
    scoring: key -> the settings that make U comparable (generation.temperature, max_new_tokens, N, workload, eval
    set...); trials that differ are not compared. external_pending: key -> external data still to come; such a
    trial is not stopped and is no bar for others (its limit will move).
    """
    keys = list(trials)
    pending = external_pending or {}
    group, notes = _scoring_notes(scoring or {}, keys)
    out: dict[str, TrialDecision] = {}
    lvl_of = {}
    limits = {}
    for k in keys:
        m = sum(group[j] == group[k] for j in keys)
        lvl_of[k] = 1 - (1 - level) / max(m, 1)
        limits[k] = trial_limit(*trials[k], lvl_of[k])
    for k in keys:
        mine = limits[k]
        if isinstance(mine, str):
            out[k] = TrialDecision(UNDETERMINED, None, [None, None], f"no prediction: {mine}")
            continue
        lim, lo, hi = mine
        bars = [(limits[j][2], j) for j in keys if j != k and group[j] == group[k] and not pending.get(j)
                and not isinstance(limits[j], str)]
        if pending.get(k):
            why = "external data is still to come in this trial: not stopped"
            out[k] = TrialDecision(CONTINUE, lim, [lo, hi], why)
            continue
        if not bars:
            out[k] = TrialDecision(CONTINUE, lim, [lo, hi], "no comparable trial with a prediction")
            continue
        bar_hi, j = min(bars)
        ci = f"{lim:.4g} [{lo:.4g}, {hi:.4g}]"
        if lo > bar_hi:
            why = (f"predicted U_s,inf {ci} cannot reach trial {j}'s (upper end {bar_hi:.4g}; {100 * lvl_of[k]:.4g} % "
                   f"intervals, Bonferroni over the trials compared)")
            out[k] = TrialDecision(STOP, lim, [lo, hi], why)
        else:
            why = f"predicted U_s,inf {ci} is not shown worse than trial {j}'s (upper end {bar_hi:.4g})"
            out[k] = TrialDecision(CONTINUE, lim, [lo, hi], why)
    return Comparison(out, min(lvl_of.values()) if lvl_of else level, notes)


def after_external(history: list[dict]) -> list[dict]:
    """The rounds a trial's fit may use: those measured after the last external-data jump (a row's external/count
    or external/eta > 0 trains the next model; the plain fit reads the jump as self-improvement)."""
    used = [h["round"] for h in history[:-1] if (h.get("external/count") or 0) > 0 or (h.get("external/eta") or 0) > 0]
    return [h for h in history if h["round"] > max(used)] if used else list(history)


def sweep_decision(histories: dict, key: str, *, suffix: str = "", level: float = 0.95, scoring: dict | None = None,
                   external_pending: dict | None = None) -> tuple[TrialDecision, list[str]]:
    """compare_trials on Tune-style histories (key -> [{"round": t, "U_s"+suffix: .., "U_v"+suffix: ..}, ...], each
    cut to its rounds after external data): trial `key`'s decision and the comparison's notes; what
    studies/theory_stop.py's scheduler asks each round."""
    cut = {k: after_external(hist) for k, hist in histories.items()}
    trials = {k: ([h["round"] for h in hist], [h["U_s" + suffix] for h in hist], [h["U_v" + suffix] for h in hist])
              for k, hist in cut.items()}
    c = compare_trials(trials, level=level, scoring=scoring, external_pending=external_pending)
    return c.trials[key], c.notes
