"""The gap fit as the run goes (docs/theory.md §2) and the stop rule: after round t is measured, before it trains.

From `fit.min_rounds` records on, fit U_s and U_v of rounds 0..t; the controller keeps the fit JSON in the run
folder and logs its `fit/*` metrics at step t (store/keep.py). In a run that has used external data, a plain fit
reads the external jumps in U_v as self-improvement; there the gap model and γ are also fitted jointly
(docs/theory.md §5) and the solver's limit is predicted from the measured state through the rest of the run's
allocation: `fit/gamma`, `fit/U_s_inf_external` (`external.verdict` says why there is none).

The stop rule (`stop.when_predicted_gain_below`) is theory/decision.py's decide_run_stop, the one `svgap fit --run
FOLDER --stop-below` reproduces: stop only when the upper end of the 95 % interval of the predicted remaining gain
U_s(t) - U_s,inf is below the threshold; never on the last round, never while external examples are still to be
handed out; after external data it decides on the rounds measured since the last jump only; "cannot tell" is
`undetermined` and goes on. Its decision, gain, upper bound and reason are the fit JSON's `stop` (fit/stop_* metrics).
Knows the theory and the round records; returns data (a FitDecision), writes nothing.
"""
from __future__ import annotations

import logging
from typing import NamedTuple

from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from orchestrator.theory.decision import Decision, decide_run_stop

log = logging.getLogger(__name__)


class FitDecision(NamedTuple):
    """After round t: the fit JSON (None before fit.min_rounds rounds or when no fit is possible) and the stop
    reason (None: go on)."""
    fit: dict | None = None
    stop: str | None = None


class OnlineFit:
    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.suffix = "" if cfg.fit.quantity == "total" else "_per_token"

    def _series(self, records: list) -> tuple[list[int], list[float], list[float]]:
        return ([r.round for r in records], [r.metrics["U_s" + self.suffix] for r in records],
                [r.metrics["U_v" + self.suffix] for r in records])

    def after_round(self, t: int, records: list, scheduler=None) -> FitDecision:
        """The fit of rounds 0..t and whether to stop (the decision, its gain and bound: the fit JSON's `stop`)."""
        fc = self.cfg.fit
        if not fc.online or len(records) < fc.min_rounds:
            return FitDecision()
        from orchestrator.theory.fit import fit_gap

        decision = self._stop(t, records, scheduler)
        stop = decision.reason if decision is not None and decision.stops else None
        rounds, S, V = self._series(records)
        try:
            fit = fit_gap(rounds, S, V, eps=fc.eps, n_boot=100, seed=self.cfg.seed, quantity=fc.quantity)
        except SvgapError as e:
            log.info(f"round {t}: no fit ({e})")
            return FitDecision(None, stop)
        data = fit.to_json()  # its fit/* metrics: store.records.fit_metrics
        external = self._external(t, records, scheduler)
        if external is not None:
            data["external"] = external
        if decision is not None:
            data["stop"] = decision.to_json()
        return FitDecision(data, stop)

    def _external(self, t: int, records: list, scheduler) -> dict | None:
        """Joint gap model + γ for a run that has used external data; None when it has not (or it cannot fit)."""
        eta = {r.round: r.metrics.get("external/eta", 0.0) for r in records}
        if scheduler is None or not any(v > 0 for v in eta.values()):
            return None
        from orchestrator.theory.allocation import simulate
        from orchestrator.theory.gamma import fit_gamma

        rounds, S, V = self._series(records)
        try:
            g = fit_gamma(rounds, S, V, eta)
        except SvgapError as e:
            log.info(f"round {t}: no joint fit with external data ({e})")
            return {"gamma": None, "U_s_inf": None, "verdict": str(e)}
        future = scheduler.future_eta(t)
        if future is None:
            return {**g.to_json(), "U_s_inf": None, "verdict": None}
        ahead = simulate(g.model, g.gamma, future, start_round=t, U_s0=S[-1], U_v0=V[-1])
        if ahead.verdict is not None:
            log.info(f"round {t}: no limit through the rest of the allocation ({ahead.verdict})")
        return {**g.to_json(), "future_eta": future, "U_s_inf": ahead.U_s_inf, "verdict": ahead.verdict}

    def _stop(self, t: int, records: list, scheduler) -> Decision | None:
        """The stop rule of theory/decision.py (decide_run_stop) after round t; None without a threshold."""
        threshold = self.cfg.stop.when_predicted_gain_below
        if threshold is None:
            return None
        rounds, S, V = self._series(records)
        used = [r.round for r in records if r.metrics.get("external/eta", 0.0) > 0]
        d = decide_run_stop(rounds, S, V, threshold=threshold, last_round=t >= self.cfg.rounds, external_used=used,
                            external_pending=scheduler.remaining if scheduler is not None else 0)
        log.info(f"round {t}: stop rule: {d.decision}: {d.reason}")
        return d
