"""`svgap sync RUN_DIR`: push a run folder -- the source of truth -- to a tracking store after the fact.

For a run that lost its tracking server for longer than the run itself, for copying a run to another store, or
for a run made where no server could be reached. The MLflow run the folder names is continued when the store has
it (only what it lacks is sent: no step is logged twice, so sync can be run again); otherwise a new run is made,
tagged `svgap.synced_from` with the folder's run id. Only committed rounds are sent (state.json: a round in flight
when the driver died is not a result). It replays the folder through mirror.py (the only MLflow writer) and reads
the store through tracking.py; this module knows no MLflow.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import config, redact

from orchestrator.store import outbox, tracking
from orchestrator.store.mirror import RunLogger, run_params
from orchestrator.errors import SvgapError
from orchestrator.store.records import fit_metrics
from orchestrator.store.run_store import RunFiles
from orchestrator.config.typed import ConfigError

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    run_id: str  # the run in the target store
    created: bool
    rounds: list[int]
    metrics_sent: int
    metrics_present: int
    artifacts_sent: list[str] = field(default_factory=list)
    finished: bool = False
    uri: str = ""  # the store it went to


def _read(run_dir: Path):
    if not run_dir.is_dir():
        raise SvgapError(f"sync: {run_dir} is not a folder")
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise SvgapError(f"sync: {run_dir} is not a run folder (it has no config.yaml)")
    try:
        cfg = config.resolve(cfg_path)
    except (ConfigError, SvgapError) as e:
        raise SvgapError(f"sync: {cfg_path} no longer validates: {e}") from None
    files = RunFiles(run_dir)
    state = files.read_state()
    if state is None:
        raise SvgapError(f"sync: {run_dir} has no finished round yet (no state.json): nothing to send")
    return cfg, files, state


def sync(run_dir: str | Path, uri: str | None = None, experiment: str | None = None) -> SyncResult:
    run_dir = Path(run_dir)
    cfg, files, state = _read(run_dir)
    uri = tracking.preflight(uri or cfg.tracking.uri)
    records = [files.read_record(t) for t in range(state.last_finished_round + 1)]
    if tracking.run_exists(state.run_id, uri):
        logger, created = RunLogger.reattach(uri, state.run_id, status=None), False
        have = tracking.metric_series(state.run_id, sorted(tracking.get_run(state.run_id, uri).data.metrics), uri)
        artifacts = set(tracking.artifact_paths(state.run_id, uri=uri))
    else:
        logger = RunLogger(uri, experiment or cfg.tracking.experiment, cfg.tracking.run_name,
                           redact.data(run_params(cfg)), tags={"svgap.synced_from": state.run_id})
        created, have, artifacts = True, {}, set()
    left = outbox.read(run_dir)  # what the run's driver could not send (tags, artifacts; metrics come from records)
    if not created:  # a copy in another store leaves the folder's outbox to the run it belongs to
        logger.keep_outbox(run_dir)
    logger.replay(left)
    log.info(f"sync {run_dir} -> run {logger.run_id} in {tracking.shown(uri)} "
             f"({'new run' if created else 'the run the folder names'}): rounds 0..{state.last_finished_round}")
    sent = present = 0
    for rec in records:
        metrics = {**rec.flat_metrics(), **fit_metrics(files.read_fit(rec.round))}
        fresh = {k: v for k, v in metrics.items() if v is not None and rec.round not in have.get(k, {})}
        present += len(metrics) - len(fresh)
        if fresh:
            logger.log_metrics(fresh, step=rec.round)
            sent += len(fresh)
    result = SyncResult(logger.run_id, created, [r.round for r in records], sent, present, uri=uri)
    for path, name in _artifacts(files.root, state.last_finished_round):
        if name not in artifacts:
            folder = str(Path(name).parent)
            logger.log_file(path, None if folder == "." else folder)
            result.artifacts_sent.append(name)
    result.finished = state.stop_reason is not None or state.last_finished_round >= cfg.rounds
    if state.stop_reason:
        logger.set_tag("svgap.stop_reason", state.stop_reason)
    if result.finished and (created or tracking.get_run(logger.run_id, uri).info.status != "FINISHED"):
        logger.end("FINISHED", wait_s=0.0)
    elif created:  # a copy of an unfinished run: say so; the run itself may still be resumed in its own store
        logger.set_tag("svgap.synced_rounds", f"0..{state.last_finished_round} of {cfg.rounds}")
        logger.end("KILLED", wait_s=0.0)
    if logger.outbox.held:
        raise SvgapError(f"sync: tracking store {tracking.shown(uri)} stopped answering; {len(logger.outbox.held)} "
                         f"write(s) not sent (run sync again: what arrived is not sent twice)")
    return result


def _artifacts(root: Path, last: int) -> list[tuple[Path, str]]:
    """(file, artifact path) of what a run logs as artifacts, for its committed rounds."""
    out = [(root / "config.yaml", "config.yaml")]
    for t in range(last + 1):
        for sub, ext in (("picks", "jsonl"), ("fits", "json")):
            p = root / sub / f"round_{t:03d}.{ext}"
            if p.is_file():
                out.append((p, f"{sub}/{p.name}"))
    ext_dir = root / "external"
    if ext_dir.is_dir():
        out += [(p, f"external/{p.name}") for p in sorted(ext_dir.glob("*.json"))]
    return out
