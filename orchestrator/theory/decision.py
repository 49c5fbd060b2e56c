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
