"""What the study's driver says and records while Tune runs: one line per trial event with trials done / running /
queued (Tune's own tables stay off), and, when the theory scheduler stops a trial, the reason on the trial's MLflow
run and in the study folder's stops.json (the summary reads it, also after a restore).

Both objects are pickled into Tune's tuner.pkl, so they hold plain data only and log at call time.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ray.tune import Callback

from orchestrator.store.files import atomic_write

STOPS = "stops.json"
log = logging.getLogger(__name__)


def counts(trials: list, trial=None, now: str | None = None) -> str:
    """The study's counts; `trial` is counted as `now` (Tune calls back before it updates the status)."""
    status = [now if (trial is not None and t is trial and now) else t.status for t in trials]
    done = sum(s == "TERMINATED" for s in status)
    failed = sum(s == "ERROR" for s in status)
    running = sum(s == "RUNNING" for s in status)
    queued = sum(s in ("PENDING", "PAUSED") for s in status)
    return f"trials: {done} done, {running} running, {queued} queued" + (f", {failed} failed" if failed else "")


def _label(trial) -> str:
    return trial.config.get("variant", {}).get("label", trial.trial_id)


class Progress(Callback):
    """trial started / round measured / finished / failed, each with the study's counts."""

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        log.info(f"[{_label(trial)}] started; {counts(trials, trial, 'RUNNING')}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("final") or not result.get("history"):
            return
        h, nan = result["history"][-1], float("nan")
        log.info(f"[{_label(trial)}] round {h['round']}/{result['rounds']}: "
                 f"held-out {h.get('heldout_acc', nan):.3f} U_s {h.get('U_s', nan):.3f} G {h.get('G', nan):.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        log.info(f"[{_label(trial)}] finished; {counts(trials, trial, 'TERMINATED')}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """A failed trial Tune will run again (FailureConfig.max_failures)."""
        self._failed(trials, trial, "; Tune retries it", "PENDING")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._failed(trials, trial, "", "ERROR")

    def _failed(self, trials, trial, what: str, now: str) -> None:
        err = ""
        try:  # the last line of Tune's error file: the exception, e.g. the stage that failed and why
            lines = [x for x in Path(trial.error_file).read_text().splitlines() if x.strip()]
            err = lines[-1].strip()[:300] if lines else ""
        except (OSError, TypeError):
            pass
        log.warning(f"[{_label(trial)}] failed (failure {trial.run_metadata.num_failures})"
                    f"{': ' + err if err else ''}{what}; {counts(trials, trial, now)}")


class StopRecorder:
    """Called by the theory scheduler when it stops a trial: the trial's MLflow run gets the reason, the predicted
    limit and the stop round; stops.json keeps them with the compute saved (rounds not run x its mean measured
    round time, start-up not counted)."""

    def __init__(self, study_dir: str, uri: str, parent_run_id: str) -> None:
        self.study_dir, self.uri, self.parent_run_id = study_dir, uri, parent_run_id

    def __call__(self, trial, result: dict, reason: str, prediction) -> None:
        from orchestrator.store import mirror, tracking

        rounds, t = int(result["rounds"]), int(result["round"])
        history = result["history"]
        rounds_s = [h["time/round"] for h in history if "time/round" in h]  # a round's own time, no start-up
        per_round = sum(rounds_s) / len(rounds_s) if rounds_s else result["seconds"] / max(len(history), 1)
        stop = {"trial_id": trial.trial_id, "label": _label(trial), "round": t, "rounds": rounds,
                "reason": reason, "prediction": prediction.to_json(), "rounds_saved": rounds - t,
                "seconds_saved": (rounds - t) * per_round, "share_saved": (rounds - t) / (rounds + 1),
                "at": time.time()}
        path = Path(self.study_dir) / STOPS
        data = json.loads(path.read_text()) if path.exists() else {}
        data[trial.trial_id] = stop
        atomic_write(path, json.dumps(data, indent=1))
        log.info(f"[{stop['label']}] stopped after round {t} of {rounds}: {reason}")
        try:
            runs = [r for r in tracking.child_runs(self.parent_run_id, self.uri)
                    if r.data.tags.get("svgap.trial_id") == trial.trial_id and r.info.status == "RUNNING"]
            for r in runs:
                mirror.set_tags(r.info.run_id, {"svgap.stop_reason": reason, "svgap.stopped_by": "theory",
                                                  "svgap.stop_round": str(t),
                                                  "svgap.predicted_U_s_inf": f"{prediction.limit:.6g}",
                                                  "svgap.compute_saved_s": f"{stop['seconds_saved']:.1f}"},
                                  self.uri)
                mirror.set_status(r.info.run_id, "FINISHED", self.uri)
        except Exception as e:  # noqa: BLE001 - the study goes on; the reason is in stops.json
            log.warning(f"[{stop['label']}] could not tag its MLflow run: {type(e).__name__}: {e}")
