"""The Tune trainable: one experiment per trial, inside the trial's Ray (no ray.init of its own) and its placement
group (bundle 0 is the trial's own process, the pools get the bundle indices placement.py chose).

A retried or restored trial continues its last unfinished MLflow run from its last finished round
(orchestrator/run/resume.py), when it has one. Every measured round is one `tune.report` -- the series a theory
scheduler fits, and the history a restored study summarises from Tune's own state; a last report (`final`) carries
the MLflow run id, the wall time and the stop reason. The experiment logs its own nested MLflow run (it is the
controller of that experiment).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import time
from pathlib import Path

SERIES = ("U_s", "U_v", "G", "U_s_per_token", "U_v_per_token", "acc_s", "acc_v", "heldout_acc", "tokens_per_s",
          "external/eta", "external/count")


def trial_resources(config: dict):
    """tune.with_resources(..., resources=trial_resources): each trial reserves its own experiment's bundles."""
    from ray.tune.execution.placement_groups import PlacementGroupFactory

    v = config["variant"]
    return PlacementGroupFactory(v["bundles"], strategy=v["strategy"])


def _load_class(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def round_row(record) -> dict:
    """What a study keeps of a round: its metrics (the ones summaries use) and its stage times."""
    row = {"round": record.round, "version": record.version}
    row.update({k: float(record.metrics[k]) for k in SERIES if k in record.metrics})
    row.update({f"time/{k}": float(v) for k, v in record.timings.items()})
    return row


def previous_attempt(study: dict, trial_id: str, out_dir: str):
    """(config, resume point) of this trial's last unfinished MLflow run with at least one finished round (a retry
    after a failure, or a restored study whose driver was killed): the trial continues it (`svgap run --resume`'s
    machinery) instead of starting over. None when there is none."""
    from orchestrator.run import resume
    from orchestrator.store import tracking
    from orchestrator.errors import SvgapError

    runs = [r for r in tracking.child_runs(study["parent_run_id"], study["uri"])
            if r.data.tags.get("svgap.trial_id") == trial_id and r.info.status != "FINISHED"]
    for r in sorted(runs, key=lambda r: -r.info.start_time):
        folder = Path(out_dir).expanduser() / r.info.run_id
        if not (folder / "state.json").exists():
            continue
        try:
            cfg, point, _ = resume.load(str(folder), [], study["uri"])
        except SvgapError:
            continue
        return cfg, point
    return None


def run_trial(config: dict) -> None:
    import ray
    from ray import tune
    from ray.util import get_current_placement_group

    from orchestrator import config as config_mod
    from orchestrator.run.experiment import Experiment
    from orchestrator.roles.worker import normal_priority

    # Ray starts the trial's process at niceness 15 like any worker; it is the experiment's controller (prompts,
    # best-of-N, fits, MLflow) that the pools wait on each stage, so it runs at the priority a `svgap run` driver has
    normal_priority()
    study, v = config["study"], config["variant"]
    if study.get("cwd") and os.path.isdir(study["cwd"]):
        os.chdir(study["cwd"])  # Tune starts trials in their own folder; the config's relative paths are the driver's
    cfg = config_mod.resolve(base=v["config"])
    pg = get_current_placement_group()
    placement = {role: (pg, idx) for role, idx in v["roles"].items()}
    classes = {role: _load_class(p) for role, p in (study.get("worker_classes") or {}).items()}
    history: list[dict] = []
    t0 = time.perf_counter()
    trial_id = tune.get_context().get_trial_id()
    previous = previous_attempt(study, trial_id, cfg.tracking.out_dir)
    point = None
    if previous is not None:
        cfg, point = previous
        history = [round_row(r) for r in point.records]

    def on_round(record) -> None:
        history.append(round_row(record))
        tune.report({"round": record.round, "rounds": cfg.rounds, "seconds": time.perf_counter() - t0,
                     "reported_at": time.time(),
                     "history": list(history), "final": False})

    tags = {"svgap.study": study["id"], "svgap.grid_point": v["point_label"], "svgap.seed": str(v["seed"]),
            "svgap.trial_id": trial_id, "svgap.node_id": ray.get_runtime_context().get_node_id()}
    with trial_log(study.get("folder"), trial_id):
        res = Experiment(cfg, tracking_uri=study["uri"], experiment_name=study["experiment"],
                         parent_run_id=study["parent_run_id"], on_round=on_round, placement=placement,
                         run_tags=tags, worker_classes=classes or None, resume=point).run()
    last = res.fits[max(res.fits)] if res.fits else None
    if last is not None:
        last = {k: val for k, val in last.items() if k not in ("bootstrap", "backtest")}
    tune.report({"round": history[-1]["round"] if history else -1, "rounds": cfg.rounds,
                 "seconds": time.perf_counter() - t0, "reported_at": time.time(), "history": list(history),
                 "final": True,
                 "run_id": res.run_id, "stop_reason": res.stop_reason, "fit": last})


def trial_log(study_folder: str | None, trial_id: str) -> contextlib.AbstractContextManager:
    """The experiment's own log lines (pools placed, each stage's time, each round), time-stamped in
    `<study folder>/logs/trial_<id>.log` (on the node the trial runs on): the study's console shows only trial-level
    lines, and warnings (a lost actor, a tracking outage), which Ray forwards from the trial's stderr. A retried or
    restored trial appends to the same file."""
    import logging

    from orchestrator.log import TimedLines, capture, console

    scope = contextlib.ExitStack()
    scope.enter_context(capture(console(logging.WARNING)))
    if study_folder:
        scope.enter_context(capture(TimedLines(Path(study_folder) / "logs" / f"trial_{trial_id}.log")))
    return scope
