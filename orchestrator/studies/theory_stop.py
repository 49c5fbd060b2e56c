"""Stopping sweep points by the gap theory, not by their current score (docs/theory.md §2, docs/decisions.md).

After each measured round of a trial, every trial's U_s and U_v series so far are compared on the decision interface
(theory/trial_compare.py): a trial is stopped only when its predicted limit U_s,inf is shown not to reach another
comparable trial's -- the lower end of its interval above the other's upper end, with every interval at level
1 - 0.05/m (Bonferroni over the m trials compared), so the trial that would have become the best is stopped at most
5 % of the time whatever the number of trials (winner's curse).

- `no decay` is a prediction only for a series not still falling (straight-line slope test), and then its interval
  reaches down by the most such a series may still fall; a series still falling, too few rounds, U_s rising or a
  rate not identified give no prediction, and a trial without a prediction is never stopped;
- trials whose U are measured differently (SCORING_KEYS: generation.temperature, max_new_tokens, n, the workload
  and its eval set, fit.quantity) are not compared; the study logs once which keys differ;
- a trial with external data still to come (its budget not yet reflected in a measured round) is not stopped and is
  no bar for the others; after its external data only the rounds measured since the last jump are fitted;
- the last round is never stopped (nothing left to save). Finished trials stay bars with their last series.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

from orchestrator.theory.decision import STOP

log = logging.getLogger(__name__)

SCORING_KEYS = ("generation.temperature", "generation.max_new_tokens", "generation.n", "workload", "fit.quantity")


@dataclass
class Prediction:
    round: int
    limit: float          # predicted U_s,inf (lower = stronger solver)
    lo: float
    hi: float
    verdict: str          # the comparison's reason

    def to_json(self) -> dict:
        return asdict(self)


def _get(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def scoring_settings(cfg: dict | None) -> dict:
    """The settings that make a trial's U comparable with another's, from its config dict (to_dict form)."""
    return {} if not cfg else {k: _get(cfg, k) for k in SCORING_KEYS}


def external_pending(cfg: dict | None, history: list[dict]) -> int:
    """External examples of the trial's budget not yet reflected in a measured round (the last row's own external
    data trains the next model, not measured yet)."""
    ext = _get(cfg or {}, "external") or {}
    if not ext or ext.get("strategy", "none") == "none":
        return 0
    return int(ext.get("budget") or 0) - int(sum((h.get("external/count") or 0) for h in history[:-1]))


class TheoryStopRule:
    """The decision, without Tune: feed each trial's series (and config), ask whether to stop it."""

    def __init__(self, min_rounds: int = 4, quantity: str = "total", n_boot: int = 100, seed: int = 0,
                 level: float = 0.95) -> None:
        self.min_rounds, self.level = min_rounds, level  # n_boot, seed: kept for callers; the intervals are exact
        self.suffix = "" if quantity == "total" else "_per_token"
        self.histories: dict[str, list[dict]] = {}
        self.scoring: dict[str, dict] = {}
        self.pending: dict[str, bool] = {}
        self.predictions: dict[str, Prediction] = {}
        self.said: set[str] = set()

    def observe(self, key: str, history: list[dict], config: dict | None = None,
                finished: bool = False) -> Prediction | None:
        """Keep trial `key`'s series (and scoring settings, external data left: none once finished); its
        prediction now, or None."""
        self.histories[key] = list(history)
        if config is not None:
            self.scoring[key] = scoring_settings(config)
            self.pending[key] = not finished and external_pending(config, history) > 0
        if len(history) < self.min_rounds:
            return None
        d = self._decision(key)
        if d.limit is None:
            return None
        p = Prediction(int(history[-1]["round"]), d.limit, d.limit_ci[0], d.limit_ci[1], d.reason)
        self.predictions[key] = p
        return p

    def _decision(self, key: str):
        from orchestrator.theory.trial_compare import sweep_decision

        hist = {k: h for k, h in self.histories.items() if len(h) >= self.min_rounds or k == key}
        d, notes = sweep_decision(hist, key, suffix=self.suffix, level=self.level,
                                  scoring={k: self.scoring.get(k, {}) for k in hist},
                                  external_pending={k: self.pending.get(k, False) for k in hist})
        for note in notes:
            if note not in self.said:
                self.said.add(note)
                log.info(f"theory stop: {note}")
        return d

    def decide(self, key: str, last_round: int, rounds: int) -> str | None:
        """A reason to stop trial `key` now, or None."""
        hist = self.histories.get(key) or []
        if len(hist) < self.min_rounds or hist[-1]["round"] != last_round or last_round >= rounds:
            return None
        d = self._decision(key)
        if d.decision != STOP:
            return None
        return f"theory after round {last_round}: {d.reason}"


def _config(trial) -> dict | None:
    return ((getattr(trial, "config", None) or {}).get("variant") or {}).get("config")


def make_scheduler(rule: TheoryStopRule, on_stop: Callable[[object, dict, str, Prediction], None]):
    """A Tune TrialScheduler (FIFO order) that asks `rule` after every measured round."""
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class TheoryStopScheduler(FIFOScheduler):
        def on_trial_result(self, tune_controller, trial, result: dict) -> str:
            if result.get("final") or "history" not in result:
                return TrialScheduler.CONTINUE
            rule.observe(trial.trial_id, result["history"], _config(trial))
            reason = rule.decide(trial.trial_id, result["round"], result["rounds"])
            if reason is None:
                return TrialScheduler.CONTINUE
            on_stop(trial, result, reason, rule.predictions[trial.trial_id])
            return TrialScheduler.STOP

        def on_trial_add(self, tune_controller, trial) -> None:
            """A restored study's finished trials: their last series are bars again."""
            last = getattr(trial, "last_result", None) or {}
            if trial.status == "TERMINATED" and last.get("history"):
                rule.observe(trial.trial_id, last["history"], _config(trial), finished=True)

        def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
            if result and result.get("history"):  # a finished trial's last series stays a bar
                rule.observe(trial.trial_id, result["history"], _config(trial), finished=True)

    return TheoryStopScheduler()
