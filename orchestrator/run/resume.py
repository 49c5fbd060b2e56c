"""`svgap run --resume RUN_ID|RUN_DIR`: where an interrupted run stands, read from its run folder (run_files.py).

Everything is checked before anything is written -- the folder, its config (validated again, `--set` allowed only
for resources and timeouts), its committed state (state.json), the records and the saved model version it names,
the MLflow run it mirrors, and that no driver still holds the run -- and each problem is one line. The experiment
then continues at round `last_finished_round + 1` (experiment.py): the records give the online fit its history and
the stop rule its series, the saved π_{t+1} is published to fresh pools and put back into the trainer, the
scheduler's state says what external data was used. A round that was in flight is redone from its start; since every
seed derives from (seed, round, ...), it gives what the uninterrupted run would have.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import config, redact

from orchestrator.store import tracking
from orchestrator.errors import SvgapError
from orchestrator.store.records import RoundRecord
from orchestrator.store.run_store import RunFiles, RunState

# `--set` keys a resume may change: where and how long things run, never what the experiment is
MUTABLE_PREFIXES = ("resources.",)
MUTABLE_SUFFIXES = ("timeout_s",)


@dataclass
class ResumePoint:
    """What a resumed experiment starts from (all read from the run folder and MLflow)."""
    run_id: str
    run_dir: Path
    last_round: int  # -1: no round finished, the run restarts at round 0 (same MLflow run)
    version: int
    records: list[RoundRecord] = field(default_factory=list)
    fits: dict[int, dict] = field(default_factory=dict)
    scheduler: dict | None = None
    update_path: Path | None = None
    logged: set[tuple[str, int]] = field(default_factory=set)  # (metric, step) MLflow has beyond last_round
    # finished rounds' metrics MLflow lacks (a tracking outage before the driver died): sent when the run resumes
    missing: dict[int, dict[str, float]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def note(self) -> dict:
        return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_round": self.last_round + 1,
                "model_version": self.version, "overrides": [redact.text(o) for o in self.overrides],
                "already_in_mlflow": len(self.logged), "filled_in_mlflow": sum(map(len, self.missing.values()))}


def check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        key = item.partition("=")[0].strip()
        if not (key.startswith(MUTABLE_PREFIXES) or key.endswith(MUTABLE_SUFFIXES)):
            raise SvgapError(f"--set {key}: not allowed with --resume (a resumed run keeps its config; only "
                             f"resources.* and *timeout_s keys may change)")


def _store_exists(uri: str) -> bool:
    """A sqlite store that is not there holds no run (and must not be created by looking)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).expanduser().is_file()
    return True


def _mlflow_run(run_id: str, uri: str):
    if not _store_exists(uri):
        raise SvgapError(f"unknown MLflow run id {run_id!r}: there is no tracking store at {tracking.shown(uri)} "
                         f"(resume with the --tracking-uri the run used)")
    return tracking.get_run(run_id, uri)


def _folder(target: str, uri_arg: str | None) -> Path:
    """RUN_DIR as given, or the folder of MLflow run RUN_ID (its tracking.out_dir param), or ./runs/RUN_ID."""
    p = Path(target).expanduser()
    if p.is_dir():
        return p
    if "/" in target or target.startswith(".") or not target.strip():
        raise SvgapError(f"--resume {target}: no such run folder")
    uri = tracking.resolve_uri(uri_arg)
    run = _mlflow_run(target, uri)
    out_dir = run.data.params.get("tracking.out_dir", "runs")
    for cand in (Path(out_dir).expanduser() / target, Path("runs") / target):
        if cand.is_dir():
            return cand
    raise SvgapError(f"MLflow run {target}: its run folder {Path(out_dir) / target} is missing (resume needs it: "
                     f"give --resume RUN_DIR if it moved)")


def _config(files: RunFiles, overrides: list[str]) -> config.ExperimentConfig:
    path = files.root / "config.yaml"
    if not path.is_file():
        raise SvgapError(f"run folder {files.root} is incomplete: config.yaml is missing")
    return config.resolve(saved=path, overrides=overrides)


def _in_mlflow(point: ResumePoint, uri: str) -> None:
    """What MLflow has: steps beyond the last finished round are not logged again (`logged`); metrics of finished
    rounds it lacks are sent on resume (`missing`, from the records and fits, as `svgap sync` would)."""
    from orchestrator.store.records import fit_metrics

    run = tracking.get_run(point.run_id, uri)
    series = tracking.metric_series(point.run_id, sorted(run.data.metrics), uri)
    point.logged = {(k, step) for k, steps in series.items() for step in steps if step > point.last_round}
    for rec in point.records:
        metrics = {**rec.flat_metrics(), **fit_metrics(point.fits.get(rec.round))}
        lack = {k: v for k, v in metrics.items() if v is not None and rec.round not in series.get(k, {})}
        if lack:
            point.missing[rec.round] = lack


def load(target: str, overrides: list[str] | None = None,
         tracking_uri: str | None = None) -> tuple[config.ExperimentConfig, ResumePoint, str]:
    """(config, resume point, tracking URI) of the run to resume; one-line SvgapError for every bad case, and
    nothing is written (not the run folder, not MLflow) before the caller starts the experiment."""
    overrides = list(overrides or [])
    check_overrides(overrides)
    files = RunFiles(_folder(target, tracking_uri))
    root = files.root
    cfg = _config(files, overrides)
    if tracking_uri is None and cfg.tracking.uri and redact.MASK in cfg.tracking.uri:
        raise SvgapError(f"run folder {root}: its tracking.uri was saved with the password masked; give "
                         f"--tracking-uri (or $MLFLOW_TRACKING_URI) to resume")
    uri = tracking.resolve_uri(tracking_uri or cfg.tracking.uri)
    state = files.read_state()
    run_id = state.run_id if state else root.name
    if state and state.run_id != root.name:
        raise SvgapError(f"run folder {root} is incomplete: state.json names run {state.run_id}, the folder "
                         f"{root.name}")
    run = _mlflow_run(run_id, uri)
    last = state.last_finished_round if state else -1
    if (state and (state.stop_reason or last >= cfg.rounds)) or run.info.status == "FINISHED":
        why = f"stopped early after round {last}" if state and state.stop_reason else \
            f"rounds 0..{last} recorded" if state else "MLflow says so"
        raise SvgapError(f"run {run_id} already finished ({why}, MLflow status {run.info.status}): nothing to "
                         f"resume")
    who = files.holder()
    if who:
        raise SvgapError(f"run {run_id} is still running (its driver, {who}, holds {root / '.lock'})")
    point = _point(files, state, run_id, last)
    _in_mlflow(point, uri)
    point.overrides = overrides
    return cfg, point, uri


def _point(files: RunFiles, state: RunState | None, run_id: str, last: int) -> ResumePoint:
    records = [files.read_record(t) for t in range(last + 1)]
    for t, rec in enumerate(records):
        if rec.round != t:
            raise SvgapError(f"run folder {files.root} is incomplete: rounds/round_{t:03d}.json holds round "
                             f"{rec.round}")
    version = state.model_version if state else 0
    path = files.update_path(version) if version > 0 else None
    if version > 0 and path is None:
        raise SvgapError(f"run folder {files.root} is incomplete: the model version {version} it stopped at "
                         f"(adapters/v{version:03d}.npz or weights/v{version:03d}.npz) is missing")
    fits = {t: f for t in range(last + 1) if (f := files.read_fit(t)) is not None}
    return ResumePoint(run_id, files.root, last, version, records, fits, state.scheduler if state else None, path)


def load_update(path: Path):
    """The saved π_version (a LoRA adapter or full weights) from the run folder."""
    import numpy as np

    from orchestrator.engines.weights import AdapterUpdate, FullUpdate

    try:
        with np.load(path) as data:
            full = "__full__" in data.files
        return FullUpdate.load(path) if full else AdapterUpdate.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise SvgapError(f"cannot read the saved model version {path}: {type(e).__name__}: {e}") from None


def describe(point: ResumePoint) -> str:
    skipped = sorted({s for _, s in point.logged})
    extra = f"; MLflow already has steps {skipped} of the round in flight (not logged again)" if skipped else ""
    if point.missing:
        extra += f"; sending MLflow the metrics it lacks of finished rounds {sorted(point.missing)}"
    return (f"resuming run {point.run_id} at round {point.last_round + 1} with model version {point.version} "
            f"({point.run_dir}){extra}")

