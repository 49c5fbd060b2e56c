"""Stopping sweep points by the gap theory, not by their current score (docs/theory.md §2).

From a trial's `min_rounds`-th measured round on, its U_s and U_v series are fitted (the fit of `svgap fit`, with
its bootstrap interval) and its solver limit U_s,inf predicted. A trial is stopped when its whole interval lies
above (worse than) the interval of the best trial so far -- it cannot beat it, whatever its remaining rounds do:
successive halving with the theory's extrapolation instead of the last value.

A trial whose fit says `no decay` (U_s flat within noise, or rising) is predicted to stay where it is: its limit
interval is the range of U_s it has measured -- unless U_s still trends down (least-squares slope below zero at
one-sided p < 0.05). With 4-5 rounds the fit's joint F-test has 3-5 degrees of freedom, and a steady fall read as
"flat within noise" is too few rounds, not a plateau (measured: lr 5e-4 read so after round 3 at U_s 1.354, then
fell to 1.096 by round 8); such a trial gets no prediction yet. Any other verdict (no limit yet, outside theory, ...)
gives no prediction, and a trial without a prediction is never stopped. The last round is never stopped (nothing
left to save). A trial whose latest fit has no physical prediction keeps its last one (the reason names the round it
came from).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from orchestrator.errors import SvgapError
from orchestrator.theory import verdicts as vd


@dataclass
class Prediction:
    round: int
    limit: float          # predicted U_s,inf (lower = stronger solver)
    lo: float
    hi: float
    verdict: str

    def to_json(self) -> dict:
        return asdict(self)


class TheoryStopRule:
    """The decision, without Tune: feed each trial's series, ask whether to stop it."""

    def __init__(self, min_rounds: int = 4, quantity: str = "total", n_boot: int = 100, seed: int = 0) -> None:
        self.min_rounds, self.n_boot, self.seed = min_rounds, n_boot, seed
        self.suffix = "" if quantity == "total" else "_per_token"
        self.predictions: dict[str, Prediction] = {}

    def predict(self, history: list[dict]) -> Prediction | None:
        from orchestrator.theory.fit import fit_gap

        if len(history) < self.min_rounds:
            return None
        t = [h["round"] for h in history]
        S = [h["U_s" + self.suffix] for h in history]
        V = [h["U_v" + self.suffix] for h in history]
        try:
            f = fit_gap(t, S, V, n_boot=self.n_boot, seed=self.seed, backtest=False)
        except SvgapError:
            return None
        if f.decaying:
            lo, hi = (f.ci.get("U_s_inf") or [f.U_s_inf, f.U_s_inf])
            return Prediction(t[-1], f.U_s_inf, min(lo, f.U_s_inf), max(hi, f.U_s_inf), f.verdict)
        if vd.word_of(f.verdict) == vd.NO_DECAY and not still_falling(t, S):
            return Prediction(t[-1], S[-1], min(S), max(S), f.verdict)
        return None

    def observe(self, key: str, history: list[dict]) -> Prediction | None:
        p = self.predict(history)
        if p is not None:
            self.predictions[key] = p
        return p

    def best(self, exclude: str | None = None) -> tuple[str, Prediction] | None:
        others = [(k, p) for k, p in self.predictions.items() if k != exclude]
        return min(others, key=lambda kp: kp[1].limit) if others else None

    def decide(self, key: str, last_round: int, rounds: int) -> str | None:
        """A reason to stop trial `key` now, or None."""
        mine = self.predictions.get(key)
        if mine is None or mine.round != last_round or last_round >= rounds:
            return None
        best = self.best(exclude=key)
        if best is None or mine.lo <= best[1].hi:
            return None
        b = best[1]
        return (f"theory: predicted U_s,inf {mine.limit:.4f} [{mine.lo:.4f}, {mine.hi:.4f}] after round "
                f"{last_round} cannot beat the best trial's {b.limit:.4f} [{b.lo:.4f}, {b.hi:.4f}] (its fit after "
                f"round {b.round}) ({vd.word_of(mine.verdict)})")


def still_falling(rounds: list[int], U_s: list[float], alpha: float = 0.05) -> bool:
    """Does U_s trend down over the rounds (a straight-line slope below zero, one-sided p < alpha)?"""
    from scipy import stats

    if len(rounds) < 3 or max(U_s) - min(U_s) <= 1e-12 * max(1.0, abs(max(U_s))):
        return False
    fit = stats.linregress(rounds, U_s)
    return bool(fit.slope < 0 and fit.pvalue / 2 < alpha)


def make_scheduler(rule: TheoryStopRule, on_stop: Callable[[object, dict, str, Prediction], None]):
    """A Tune TrialScheduler (FIFO order) that asks `rule` after every measured round."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class TheoryStopScheduler(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            if result.get("final") or "history" not in result:
                return TrialScheduler.CONTINUE
            rule.observe(trial.trial_id, result["history"])
            reason = rule.decide(trial.trial_id, result["round"], result["rounds"])
            if reason is None:
                return TrialScheduler.CONTINUE
            on_stop(trial, result, reason, rule.predictions[trial.trial_id])
            return TrialScheduler.STOP

        def on_trial_add(self, tune_controller, trial) -> None:
            """A restored study's finished trials: their last predictions are the bar again."""
            last = getattr(trial, "last_result", None) or {}
            if trial.status == "TERMINATED" and last.get("history"):
                rule.observe(trial.trial_id, last["history"])

        def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
            if result and result.get("history"):  # a finished trial's last prediction stays the bar
                rule.observe(trial.trial_id, result["history"])

    return TheoryStopScheduler()
