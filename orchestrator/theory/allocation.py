"""Cross-improvement with a limited budget of external data (docs/theory.md §5, Proposition 5.1).

External data acts only through the verifier: before round t's update U_v <- U_v / (1 + gamma eta_t), where eta_t
is round t's share of the budget M (sum of eta_t = 1). Then one round of the closed-form dynamics runs from the new
state. The total drop J moves the solver's limit to U_s_inf = U_s(0) - alpha (delta + J) / (alpha - beta).

Timing convention, shared with the round loop and the scheduler: eta_t joins round t's training set, so its jump
first shows in the measured U_v(t+1); eta[i] of an allocation is the share of round start_round + i.

Strategies (stable names the external-data scheduler uses), for T rounds:
    uniform  1/T every round
    early    the budget spread evenly over the first ceil(T/3) rounds, nothing after
    late     the budget spread evenly over the last  ceil(T/3) rounds, nothing before

Physical guards (docs/theory.md §7): a model outside alpha > beta >= 0, a negative limit or gap, a simulated
uncertainty below 0, a failed optimizer or gamma at the edge of its range gives a verdict (theory/verdicts.py),
never a number. Intervals: theory/intervals.py propagates the fit's bootstrap (and gamma's uncertainty) through
every strategy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd
from orchestrator.theory.fit import FitResult
from orchestrator.theory.model import GapModel

STRATEGIES = ("early", "uniform", "late")
Objective = Literal["limit", "horizon"]


def strategy_shares(name: str, rounds: int) -> list[float]:
    """Shares eta_0..eta_{T-1} (sum 1) of a named strategy over `rounds` rounds; see the module docstring."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SvgapError(f"rounds must be a positive integer, got {rounds!r}")
    k = math.ceil(rounds / 3)
    if name == "uniform":
        return [1.0 / rounds] * rounds
    if name == "early":
        return [1.0 / k] * k + [0.0] * (rounds - k)
    if name == "late":
        return [0.0] * (rounds - k) + [1.0 / k] * k
    raise SvgapError(f"unknown strategy {name!r} (choose one of {', '.join(STRATEGIES)})")


def check_shares(eta: Sequence[float], rounds: int, name: str = "shares") -> list[float]:
    """One share per round, each finite and >= 0, summing to 1 (within 1e-6)."""
    try:
        vals = [float(x) for x in eta]
    except (TypeError, ValueError):
        raise SvgapError(f"{name}: every share must be a number, got {list(eta)!r}") from None
    if len(vals) != rounds:
        raise SvgapError(f"{name}: has {len(vals)} entries, expected one per round ({rounds})")
    if any(not math.isfinite(x) or x < 0 for x in vals):
        raise SvgapError(f"{name}: shares must be finite and >= 0, got {vals}")
    if abs(sum(vals) - 1.0) > 1e-6:
        raise SvgapError(f"{name}: shares must sum to 1, they sum to {sum(vals):g}")
    return vals


def outside_theory(model: GapModel) -> str | None:
    """The verdict (text) of a model no allocation can be predicted with: outside alpha > beta >= 0 (a verifier jump
    would not move the solver the way §3 assumes), a negative limit or a negative gap; None when it is usable."""
    v = vd.model_verdict(model)
    return None if v is None else str(v)


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma <= 0:
        raise SvgapError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


def _as_model(fit: FitResult | GapModel) -> GapModel:
    """The model of a fit; NoPrediction (with the fit's own verdict) when the fit has none."""
    if isinstance(fit, GapModel):
        return fit
    if isinstance(fit, FitResult):
        if not fit.decaying:
            word = vd.word_of(fit.verdict) or vd.NO_DECAY
            detail = fit.verdict.split(": ", 1)[-1]
            raise vd.NoPrediction(vd.Verdict(word, f"cannot plan external data: the fit has no model ({detail})"))
        return fit.model
    raise SvgapError(f"expected a FitResult or GapModel, got {type(fit).__name__}")


@dataclass
class AllocationOutcome:
    """Predicted path under one allocation: U_s_path/U_v_path hold rounds start_round..start_round+T.
    With a verdict (an impossible prediction) U_s_T and U_s_inf are None; `ci` holds 95 % intervals when the plan
    propagated the fit's uncertainty (theory/intervals.py)."""

    U_s_T: float | None
    U_s_inf: float | None
    J: float | None
    U_s_path: list[float]
    U_v_path: list[float]
    jumps: list[float] = field(default_factory=list)
    verdict: str | None = None
    ci: dict = field(default_factory=dict)
    impossible_share: float | None = None  # of the replicates: share whose prediction has a verdict
    vs_best: str | None = None  # best | shown worse | not shown worse (its interval against the best's)

    def to_json(self) -> dict:
        out = {"U_s_T": self.U_s_T, "U_s_inf": self.U_s_inf, "J": self.J}
        if self.ci:
            out["ci"] = {k: (None if v is None else list(v)) for k, v in self.ci.items()}
            out["impossible_share"] = self.impossible_share
        if self.vs_best is not None:
            out["vs_best"] = self.vs_best
        if self.verdict is not None:
            out["verdict"] = self.verdict
        return out

    @classmethod
    def impossible(cls, verdict: vd.Verdict | str) -> "AllocationOutcome":
        return cls(None, None, None, [], [], [], verdict=str(verdict))


def _run(model: GapModel, gamma: float, eta: Sequence[float], us: float, uv: float):
    """The bare recursion (no guards): paths, jumps and the limit reached after the last round."""
    s_path, v_path, jumps = [us], [uv], []
    for e in eta:
        jump = uv * gamma * e / (1.0 + gamma * e)
        jumps.append(jump)
        us, uv = model.step(us, uv - jump)
        s_path.append(us)
        v_path.append(uv)
    return s_path, v_path, jumps, model.limit_from(us, uv)


def path_verdict(s_path: list[float], v_path: list[float], limit: float, start_round: int) -> vd.Verdict | None:
    """NEGATIVE_UNCERTAINTY when the limit or any point of a simulated path is below 0 (or not finite)."""
    if not (math.isfinite(limit) and limit >= 0):
        return vd.Verdict(vd.NEGATIVE_UNCERTAINTY, f"the predicted limit U_s,inf would be {limit:.3g}; an "
                                                   f"uncertainty cannot be below 0 (the jumps are too large for "
                                                   f"this model: gamma or the budget's share per round too big)")
    for name, path in (("U_s", s_path), ("U_v", v_path)):
        for i, x in enumerate(path):
            if not (math.isfinite(x) and x >= 0):
                return vd.Verdict(vd.NEGATIVE_UNCERTAINTY, f"the predicted {name} at round {start_round + i} would "
                                                           f"be {x:.3g}; an uncertainty cannot be below 0")
    return None


def simulate(fit: FitResult | GapModel, gamma: float, eta: Sequence[float], *, start_round: int = 0,
             U_s0: float | None = None, U_v0: float | None = None) -> AllocationOutcome:
    """Round by round from start_round: jump U_v <- U_v/(1+gamma eta_t), then one round of the dynamics.

    The start state is the model's curve at start_round unless U_s0/U_v0 (e.g. the measured values) are given.
    eta need not sum to 1 here (zeros = no external data); plan() checks budgets. A model no allocation can be
    predicted with, or a prediction below 0, gives an outcome with a verdict and no numbers.
    """
    gamma = _check_gamma(gamma)
    eta = [float(x) for x in eta]
    if any(not math.isfinite(x) or x < 0 for x in eta):
        raise SvgapError(f"eta must be finite and >= 0, got {eta}")
    try:
        model = _as_model(fit)
    except vd.NoPrediction as e:
        return AllocationOutcome.impossible(e.verdict)
    why = vd.model_verdict(model)
    if why is not None:
        return AllocationOutcome.impossible(why)
    us = float(model.U_s(start_round) if U_s0 is None else U_s0)
    uv = float(model.U_v(start_round) if U_v0 is None else U_v0)
    s_path, v_path, jumps, limit = _run(model, gamma, eta, us, uv)
    why = path_verdict(s_path, v_path, limit, start_round)
    if why is not None:
        return AllocationOutcome(None, None, float(sum(jumps)), s_path, v_path, jumps, verdict=str(why))
    return AllocationOutcome(U_s_T=s_path[-1], U_s_inf=limit, J=float(sum(jumps)), U_s_path=s_path,
                             U_v_path=v_path, jumps=jumps)


@dataclass
class Plan:
    """Predicted outcome of each candidate allocation and the best one under `objective` (lower U_s is better):
    'limit' ranks by U_s_inf, 'horizon' by U_s at the end of the T planned rounds.

    best: the lowest point prediction among outcomes without a verdict (None when every one has a verdict, then
    `verdict` says why). comparison (with samples, theory/intervals.py): best vs runner-up, whether they can be told
    apart under the fit; chosen: what the `planned` scheduler uses (best, or the least committal allocation when
    the best is not distinguishable) and why: the reason in words."""

    objective: str
    gamma: float
    rounds: int
    start_round: int
    shares: dict[str, list[float]]
    outcomes: dict[str, AllocationOutcome]
    baseline: AllocationOutcome
    best: str | None
    verdict: str | None = None
    comparison: dict | None = None
    chosen: str | None = None
    why: str = ""

    def key(self, outcome: AllocationOutcome) -> float | None:
        return outcome.U_s_inf if self.objective == "limit" else outcome.U_s_T

    def to_json(self) -> dict:
        out = {"strategies": {k: {"eta": self.shares[k], **self.outcomes[k].to_json()} for k in self.outcomes},
               "best": self.best, "objective": self.objective, "baseline": self.baseline.to_json(),
               "gamma": self.gamma, "rounds": self.rounds, "start_round": self.start_round,
               "chosen": self.chosen, "why": self.why}
        if self.comparison is not None:
            out["comparison"] = self.comparison
        if self.verdict is not None:
            out["verdict"] = self.verdict
        return out


def _check_plan_args(gamma, rounds, strategies, objective) -> tuple[float, dict[str, list[float]]]:
    gamma = _check_gamma(gamma)
    if objective not in ("limit", "horizon"):
        raise SvgapError(f"objective must be 'limit' or 'horizon', got {objective!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise SvgapError(f"rounds must be a positive integer, got {rounds!r}")
    if isinstance(strategies, dict):
        shares = {str(k): check_shares(v, rounds, f"strategy {k}") for k, v in strategies.items()}
    else:
        shares = {str(k): strategy_shares(str(k), rounds) for k in strategies}
    if not shares:
        raise SvgapError("no strategies to plan")
    return gamma, shares


def plan(fit: FitResult | GapModel, gamma: float, rounds: int,
         strategies: dict[str, Sequence[float]] | Sequence[str] = STRATEGIES, objective: Objective = "limit", *,
         start_round: int = 0, U_s0: float | None = None, U_v0: float | None = None) -> Plan:
    """Simulate each allocation over `rounds` rounds from start_round and pick the best by `objective`.

    strategies: names (early/uniform/late) or {name: explicit shares}. The baseline (no external data) is always
    simulated too, so the gain of any allocation over pure self-improvement is visible. A model no allocation can
    be predicted with gives a Plan whose `verdict` says why and whose outcomes hold no numbers; an allocation whose
    prediction is impossible carries its own verdict and is not ranked. Bad arguments raise SvgapError.
    """
    gamma, shares = _check_plan_args(gamma, rounds, strategies, objective)
    try:
        model = _as_model(fit)
        vd.require(vd.model_verdict(model))
    except vd.NoPrediction as e:
        text = f"{e.verdict.word}: no allocation can be predicted with this model ({e.verdict.detail})"
        bad = AllocationOutcome.impossible(text)
        return Plan(objective, gamma, rounds, start_round, shares, {k: bad for k in shares}, bad, None,
                    verdict=text, why=text)
    kw = dict(start_round=start_round, U_s0=U_s0, U_v0=U_v0)
    outcomes = {k: simulate(model, gamma, v, **kw) for k, v in shares.items()}
    baseline = simulate(model, gamma, [0.0] * rounds, **kw)
    pl = Plan(objective, gamma, rounds, start_round, shares, outcomes, baseline, None)
    ranked = [k for k in outcomes if outcomes[k].verdict is None]
    if not ranked:
        first = next(iter(outcomes.values())).verdict or ""
        pl.verdict = f"{vd.word_of(first) or vd.NEGATIVE_UNCERTAINTY}: every allocation's prediction is impossible " \
                     f"({first.split(': ', 1)[-1]})"
        pl.why = pl.verdict
        return pl
    pl.best = pl.chosen = min(ranked, key=lambda k: pl.key(outcomes[k]))  # ties: the first listed
    pl.why = f"{pl.best} has the lowest predicted {'U_s,inf' if objective == 'limit' else 'U_s at the horizon'}"
    return pl
