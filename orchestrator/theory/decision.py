"""One decision interface for the online stop rule, the sweep's theory stop and `svgap fit --stop-below`
(docs/theory.md §2, §6): stop | continue | undetermined, with the estimate, its interval and the reason.

Why: a stop decided on the *point* prediction of the remaining gain stops 19-45 % of runs too early at 1-3 % noise
(issue 22). Here a run stops only when the *upper* end of the 95 % interval of its remaining gain
U_s(T) - U_s,inf = alpha' e^{-rT} (T: the last measured round) is below the threshold, never while external data
is still to come, and "cannot tell" (too few rounds, rate not identified, no decay without being shown flat, U_s
rising) is `undetermined`, which does not stop. The intervals are theory/limit_interval.py's profile intervals
(measured coverage: benchmarks/decisions.py).

A series that does not decay (the F-test against constant series is not significant) gives a prediction only when
it is shown flat: its limit is its current level, and its remaining fall is bounded by the one-sided upper bound of
its fall per round divided by SLOWEST_RATE (a decay slower than that per round is not told from a line by a few
rounds). Pure: no Ray, no MLflow, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from orchestrator.errors import SvgapError
from orchestrator.theory.limit_interval import ProfileBatch, profile_batch

STOP, CONTINUE, UNDETERMINED = "stop", "continue", "undetermined"
MIN_ROUNDS = 4          # 5 parameters on 2 series (theory/fit.py)
DECAY_ALPHA = 0.05      # the F-test level that calls a series decaying
SLOWEST_RATE = 0.1      # per round: a flat series' remaining fall is at most (fall per round) / SLOWEST_RATE


def _num(x) -> float | None:
    """JSON-safe float: None for missing or non-finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Decision:
    """What to do after the last round given, and why."""

    decision: str                 # stop | continue | undetermined
    gain: float | None            # point prediction of U_s(T) - U_s,inf
    gain_upper: float | None      # upper end of its interval (None: unbounded / not identified)
    threshold: float
    reason: str
    rounds: list[int] = field(default_factory=list)
    level: float = 0.95
    estimates: dict = field(default_factory=dict)  # U_s_inf, its interval, rate and its interval (None: not identified)

    @property
    def stops(self) -> bool:
        return self.decision == STOP

    def to_json(self) -> dict:
        return {"decision": self.decision, "gain": _num(self.gain), "gain_upper": _num(self.gain_upper),
                "threshold": float(self.threshold), "reason": self.reason, "rounds": list(self.rounds),
                "level": self.level, "estimates": dict(self.estimates)}


def _series(rounds: Sequence, U_s: Sequence, U_v: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Validated arrays, or the one-line reason the series cannot be decided on."""
    from orchestrator.theory.fit import check_series

    try:
        t, S, V = check_series(rounds, U_s, U_v)
    except SvgapError as e:
        return str(e)
    if (S <= 0).any() or (V <= 0).any():
        return "an uncertainty U = -log pi is <= 0 in the series; relative residuals are undefined"
    return t, S, V


def flat_gain_upper(p: ProfileBatch) -> np.ndarray:
    """Upper bound of a flat series' remaining fall: its fall per round's upper bound over SLOWEST_RATE."""
    return np.maximum(p.fall_upper, 0.0) / SLOWEST_RATE


def _estimates(p: ProfileBatch, i: int) -> dict:
    lo, hi = p.U_s_inf_ci[i]
    rlo, rhi = p.rate_ci[i]
    return {"U_s_inf": _num(p.U_s_inf[i]), "U_s_inf_ci": [_num(lo), _num(hi)], "rate": _num(p.rate[i]),
            "rate_ci": [_num(rlo), _num(rhi)], "rate_identified": bool(p.rate_identified[i]),
            "decay_p": _num(p.decay_p[i]), "autocorrelation_widening": _num(p.kappa[i])}


def rule(p: ProfileBatch, i: int, threshold: float, T: int) -> tuple[str, float | None, float | None, str]:
    """(decision, gain, gain_upper, reason) for run i of a profile batch: the rule of the module docstring."""
    thr = f"{threshold:g}"
    if p.decay_p[i] > DECAY_ALPHA:
        up = float(flat_gain_upper(p)[i])
        if up < threshold:
            return STOP, 0.0, up, (f"U_s is flat within noise (no decay, F-test p = {p.decay_p[i]:.2f}): its fall "
                                   f"per round is at most {p.fall_upper[i]:.4g}, so the remaining gain after round "
                                   f"{T} is at most {up:.4g} < {thr}")
        return UNDETERMINED, None, up, (f"no decay shown (F-test p = {p.decay_p[i]:.2f}) but not shown flat either: "
                                        f"U_s may still fall {max(p.fall_upper[i], 0):.4g} per round; fit more rounds")
    gain, lo, up = float(p.gain[i]), float(p.gain_ci[i, 0]), float(p.gain_ci[i, 1])
    if gain < 0:
        return UNDETERMINED, None, None, "U_s rises over the rounds (alpha' < 0): outside the theory, no limit"
    if not math.isfinite(up):
        return UNDETERMINED, gain, None, ("rate not identified: a straight-line fall of U_s fits as well as a "
                                          "slowing one, so the remaining gain has no upper bound; fit more rounds")
    ci = f"{gain:.4g} [{lo:.4g}, {up:.4g}]"
    if up < threshold:
        return STOP, gain, up, f"predicted remaining gain U_s({T}) - U_s,inf = {ci}: upper bound < {thr}"
    if lo >= threshold:
        return CONTINUE, gain, up, f"predicted remaining gain U_s({T}) - U_s,inf = {ci}: shown >= {thr}"
    return CONTINUE, gain, up, f"predicted remaining gain U_s({T}) - U_s,inf = {ci}: upper bound not below {thr}"


def decide_stop(rounds: Sequence, U_s: Sequence, U_v: Sequence, *, threshold: float, external_pending: bool = False,
                level: float = 0.95, autocorr: bool = True) -> Decision:
    """Stop, continue or undetermined after the last round given (module docstring for the rule).

    threshold: the stop threshold on the remaining gain U_s(T) - U_s,inf, in U's units (stop.when_predicted_gain_below).
    external_pending: external data is still to come in this run -> never stop. level: of the gain's interval.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise SvgapError(f"stop threshold must be a positive number, got {threshold!r}")
    if not 0 < level < 1:
        raise SvgapError(f"interval level must be in (0, 1), got {level}")
    got = [int(r) for r in rounds] if all(_is_int(r) for r in rounds) else []
    if len(rounds) < MIN_ROUNDS:
        return Decision(UNDETERMINED, None, None, threshold, f"too few rounds: {len(rounds)} < {MIN_ROUNDS} "
                        f"(5 parameters on 2 series)", got, level)
    checked = _series(rounds, U_s, U_v)
    if isinstance(checked, str):
        return Decision(UNDETERMINED, None, None, threshold, checked, got, level)
    t, S, V = checked
    p = profile_batch(t, S[None], V[None], level=level, autocorr=autocorr)
    what, gain, up, why = rule(p, 0, threshold, int(t[-1]))
    if external_pending:
        what, why = CONTINUE, f"external data is still to come in this run: not stopping ({why})"
    return Decision(what, gain, up, threshold, why, [int(x) for x in t], level, _estimates(p, 0))


def decide_run_stop(rounds: Sequence, U_s: Sequence, U_v: Sequence, *, threshold: float, last_round: bool = False,
                    external_used: Sequence = (), external_pending: int = 0) -> Decision:
    """The online stop rule of a run after its last round given: what run/online_fit.py takes and what
    `svgap fit --run FOLDER --stop-below` reproduces. decide_stop, plus the run's own facts:

    last_round: the run ends after this round anyway -> continue (nothing left to save); external_pending:
    external examples still to be handed out -> continue; external_used: training rounds k that used external
    data -- π_{k+1} jumped, so the plain fit misreads U_v's jump as self-improvement: the rule decides only on the
    rounds measured after the last such jump (undetermined while fewer than MIN_ROUNDS)."""
    rounds, U_s, U_v = list(rounds), list(U_s), list(U_v)
    used = [int(k) for k in external_used if any(float(r) > k for r in rounds)]
    what = ""
    if used:
        k = max(used)
        keep = [i for i, r in enumerate(rounds) if float(r) > k]
        rounds, U_s, U_v = [rounds[i] for i in keep], [U_s[i] for i in keep], [U_v[i] for i in keep]
        what = f"on the rounds after the external data of training round {k}: "
    d = decide_stop(rounds, U_s, U_v, threshold=threshold)
    if external_pending > 0:
        d.decision = CONTINUE
        d.reason = f"{external_pending} external examples are still to be used: not stopping ({what}{d.reason})"
        return d
    d.reason = what + d.reason
    if last_round:
        d.decision, d.reason = CONTINUE, f"the last round: the run ends anyway ({d.reason})"
    return d


def _is_int(x) -> bool:
    try:
        return float(x) == int(float(x))
    except (TypeError, ValueError, OverflowError):
        return False


# --- the sweep: which trials cannot reach the best one's limit --------------------------------------------------


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
    interval (lo -inf when the rate is not identified); a non-decaying one: its level, lowered by what a series not
    shown flat may still fall (flat_gain_upper), with the level's own t interval."""
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


def sweep_decision(histories: dict, key: str, *, suffix: str = "", level: float = 0.95, scoring: dict | None = None,
                   external_pending: dict | None = None) -> tuple[TrialDecision, list[str]]:
    """compare_trials on Tune-style histories (key -> [{"round": t, "U_s"+suffix: .., "U_v"+suffix: ..}, ...]):
    trial `key`'s decision and the comparison's notes; what studies/theory_stop.py's scheduler asks each round."""
    trials = {k: ([h["round"] for h in hist], [h["U_s" + suffix] for h in hist], [h["U_v" + suffix] for h in hist])
              for k, hist in histories.items()}
    c = compare_trials(trials, level=level, scoring=scoring, external_pending=external_pending)
    return c.trials[key], c.notes
