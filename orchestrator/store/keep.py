"""What the controller keeps of the decisions of a round (the online fit, the external-data scheduler): the run
folder first -- the source of truth, written atomically -- then the MLflow mirror (`log`: a RunLogger, or the
RoundLog that sends a round's writes as one batch). The deciders themselves return data and write nothing."""
from __future__ import annotations

from orchestrator.store.records import fit_metrics
from orchestrator.store.run_store import RunFiles


def keep_fit(files: RunFiles, log, t: int, fit: dict) -> None:
    """fits/round_XXX.json, then the same JSON and its fit/* metrics at step t."""
    files.fit(t, fit)
    log.log_dict(fit, f"fits/round_{t:03d}.json")
    log.log_metrics(fit_metrics(fit), step=t)
    stop = fit.get("stop")
    if isinstance(stop, dict):  # the stop rule's latest decision and why (the metrics carry its numbers)
        log.set_tag("svgap.stop_decision", f"round {t}: {stop.get('decision')}: {stop.get('reason')}")


def keep_external(files: RunFiles, log, decided: list[tuple[str, dict]]) -> None:
    """external/allocation.json, external/plan.json: each in the run folder, then as an MLflow artifact."""
    for name, data in decided:
        files.external(name, data)
        log.log_dict(data, f"external/{name}")
