"""The study's outcomes read back after Tune ran: one Outcome per variant from Tune's results, the child MLflow
runs (by trial id) and stops.json -- also for a restored study, whose earlier trials this command did not run."""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator import redact
from orchestrator.studies.progress import STOPS, log
from orchestrator.studies.variants import Outcome, Variant


def read_outcomes(grid, variants: list[Variant], parent: str, folder: Path, uri: str,
                  t0_unix: float) -> tuple[list[Outcome], int]:
    """(one outcome per variant, in the variants' order; how many trials this command ran, i.e. reported after
    t0_unix)."""
    stops = json.loads((folder / STOPS).read_text()) if (folder / STOPS).exists() else {}
    runs = _trial_runs(parent, uri)
    by_index: dict[int, Outcome] = {}
    ran = 0
    for res in grid:
        cfg = res.config or {}
        v = cfg.get("variant", {})
        out, mine = _outcome(res, variants[v["index"]], runs, stops, t0_unix)
        ran += mine
        by_index[v["index"]] = out
    missing = [v.label for i, v in enumerate(variants) if i not in by_index]
    for i, v in enumerate(variants):
        by_index.setdefault(i, Outcome(v, error="no result from Tune"))
    if missing:
        log.warning(f"no result for: {', '.join(missing)}")
    return [by_index[i] for i in range(len(variants))], ran


def _trial_runs(parent: str, uri: str) -> dict[str, list]:
    """The parent's child runs by trial id; a run the theory scheduler stopped ends FINISHED."""
    from orchestrator.store import mirror, tracking

    runs: dict[str, list] = {}
    for r in tracking.child_runs(parent, uri):
        runs.setdefault(r.data.tags.get("svgap.trial_id", ""), []).append(r)
        # Tune ends a stopped trial's thread with SystemExit, which the experiment records as FAILED after the
        # scheduler marked the run: it ended by decision, so FINISHED (its tags say why)
        if r.data.tags.get("svgap.stopped_by") == "theory" and r.info.status != "FINISHED":
            mirror.set_status(r.info.run_id, "FINISHED", uri)
    return runs


def _outcome(res, variant: Variant, runs: dict[str, list], stops: dict, t0_unix: float) -> tuple[Outcome, int]:
    """One trial's outcome, and 1 when this command's run of it reported it (else 0)."""
    from orchestrator.store.records import RoundRecord

    out = Outcome(variant)
    m = res.metrics or {}
    trial_id = m.get("trial_id") or ""
    # reported by this command's trials: our own float clock (Tune's `timestamp` is whole seconds, and a
    # command run right after the last one ended counted that one's trials as its own)
    # (a study saved before `reported_at` existed: Tune's timestamp, with its second of truncation)
    at = m["reported_at"] if "reported_at" in m else float(m.get("timestamp") or 0) + 1
    mine = sorted(runs.get(trial_id, []), key=lambda r: r.info.start_time)
    out.run_id = m.get("run_id") or (mine[-1].info.run_id if mine else None)
    out.seconds = float(m.get("seconds", 0.0))
    out.records = [_record(h, RoundRecord) for h in m.get("history", [])]
    out.stop = stops.get(trial_id)
    if res.error is not None:
        first = redact.text((str(res.error).strip().splitlines() or [""])[-1])
        out.error = first or type(res.error).__name__
    elif not m.get("final") and out.stop is None:
        out.error = "the trial ended without its last round"
    out.trial_id, out.attempts = trial_id, len(mine)
    return out, int(float(at) >= t0_unix)


def _record(h: dict, cls):
    metrics = {k: v for k, v in h.items() if k not in ("round", "version") and not k.startswith("time/")}
    timings = {k[5:]: v for k, v in h.items() if k.startswith("time/")}
    return cls(int(h["round"]), int(h.get("version", h["round"])), metrics, timings, {})
