"""The study's driver: validate every variant, start or join Ray, one parent MLflow run, one Tune trial per variant
(or Tuner.restore of the same study), then the outcomes, the summary table, its files and plots.

Tune does the scheduling by resources, the queueing, the retries of a failed trial (FailureConfig) and the restore
of an interrupted study; its state lives under the study's own folder, `<tracking.out_dir>/studies/<kind>-<id>/`
(the id hashes the resolved base config, the grid, the seeds and where it logs), never under ~/ray_results.
Running the same command again restores the study there and runs only what did not finish.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import redact
from orchestrator.config import dump
from orchestrator.errors import SvgapError
from orchestrator.studies import placement as pl
from orchestrator.studies.progress import Progress, StopRecorder, log  # the study's progress lines
from orchestrator.studies.variants import Outcome, Variant, build_variants, check_size, identity


@dataclass
class StudySpec:
    """What a study command asks for."""
    kind: str                      # sweep | allocation | scaling: names the folder, the parent run and its table
    data: dict                     # the config mapping, --set applied
    grid: dict[str, list]
    seeds: int = 1
    stop_by_theory: bool = False
    max_failures: int = 1          # Tune retries a failed trial this often
    yes: bool = False
    max_concurrent: int | None = None  # None: as many trials as the cluster's resources hold (scaling: 1)
    params: dict = field(default_factory=dict)   # the command's own parameters, logged as study.*


@dataclass
class StudyResult:
    parent_run_id: str
    tracking_uri: str
    table: dict
    outcomes: list[Outcome]
    concurrency: int
    seconds: float
    out_dir: Path
    restored: bool = False
    ran: int = 0                   # trials run by this command (0: the study had finished before)


def _absolute_uri(uri: str) -> str:
    """Trials run in other processes (and folders): a relative sqlite path must not move with them."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().absolute())
    return uri


class Study:
    def __init__(self, spec: StudySpec, *, address: str | None = None, tracking_uri: str | None = None,
                 experiment_name: str | None = None, summary=None,
                 worker_classes: dict[str, str] | None = None) -> None:
        """summary: the table maker (by default the study kind's, config/registry.py STUDIES); worker_classes:
        role -> 'module:Class' replacing a pool's actor class in every trial (tests)."""
        from orchestrator.config.registry import study_summary

        self.spec = spec
        self.summary = summary or study_summary(spec.kind)
        self.base, self.variants = build_variants(spec.data, spec.grid, spec.seeds,
                                                  getattr(self.summary, "point_name", None))
        check_size(len(self.variants), spec.yes)
        self.address = address
        self.uri = tracking_uri or self.base.tracking.uri
        self.experiment_name = experiment_name or self.base.tracking.experiment
        self.worker_classes = worker_classes or {}

    # ---- before anything runs ----
    def _preflight(self) -> tuple[bool, list[pl.TrialBundles], int]:
        import ray

        import workloads
        from orchestrator.roles import ray_session
        from orchestrator.store import tracking
        from orchestrator.store.run_store import check_writable
        from orchestrator.run.scheduler import build_scheduler

        workload = workloads.get(self.base.workload.name, self.base.workload.options)
        for v in self.variants:  # a bad external-data setting fails before anything runs, named by its point
            if v.cfg.external.strategy != "none":
                try:
                    build_scheduler(v.cfg, workload)
                except SvgapError as e:
                    raise SvgapError(f"grid point {v.point_label}: {e}") from None
        for out_dir in sorted({v.cfg.tracking.out_dir for v in self.variants} | {self.base.tracking.out_dir}):
            check_writable(Path(out_dir), "tracking.out_dir")
        started = ray_session.connect(self.address)
        try:
            for v in self.variants:
                try:
                    ray_session.check_capacity(v.cfg.resources)
                except SvgapError as e:
                    raise SvgapError(f"grid point {v.point_label}: {e}") from None
            have = ray.cluster_resources()
            bundles = [pl.trial_bundles(v.cfg, have) for v in self.variants]
            for v, tb in zip(self.variants, bundles):
                for kind, want in tb.total().items():
                    if want > have.get(kind, 0.0) + 1e-9:
                        raise SvgapError(f"grid point {v.point_label}: a trial asks for {want:g} {kind} (its pools "
                                         f"and {pl.HEAD_CPU} CPU of its own) but the cluster has "
                                         f"{have.get(kind, 0.0):g}")
            slots = min(pl.concurrency(tb.total(), have) for tb in bundles)
            slots = min(slots, self.spec.max_concurrent or slots)
            self.uri = _absolute_uri(tracking.preflight(self.uri))
        except SvgapError:
            ray_session.shutdown(started)
            raise
        return started, bundles, min(slots, len(self.variants))

    def _param_space(self, sid: str, parent_run_id: str, bundles: list[pl.TrialBundles], folder: Path) -> dict:
        from ray import tune

        from orchestrator.config.typed import to_dict

        def config(v: Variant) -> dict:  # a trial may start in another folder (or node): no relative run folder
            d = to_dict(v.cfg)
            d["tracking"]["out_dir"] = str(Path(v.cfg.tracking.out_dir).expanduser().absolute())
            return d

        variants = [{"index": i, "label": v.label, "point_label": v.point_label, "point": v.point, "seed": v.seed,
                     "config": config(v), "bundles": tb.bundles, "roles": tb.roles, "strategy": tb.strategy}
                    for i, (v, tb) in enumerate(zip(self.variants, bundles))]
        study = {"id": sid, "uri": self.uri, "experiment": self.experiment_name, "parent_run_id": parent_run_id,
                 "cwd": os.getcwd(), "worker_classes": self.worker_classes, "folder": str(folder)}
        return {"study": study, "variant": tune.grid_search(variants)}

    def _tuner(self, folder: Path, param_space: dict, scheduler, restore: bool):
        from ray import tune

        from orchestrator.studies.trial import run_trial, trial_resources

        trainable = tune.with_resources(run_trial, trial_resources)
        if restore:  # Tune's own restore: finished trials stay finished, the rest (and failed ones) run again
            return tune.Tuner.restore(str(folder / "tune"), trainable=trainable, resume_unfinished=True,
                                      restart_errored=True)
        return tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True,
                                        max_concurrent_trials=self.spec.max_concurrent,
                                        trial_name_creator=lambda t: f"trial_{t.trial_id}",
                                        trial_dirname_creator=lambda t: f"trial_{t.trial_id}"),
            run_config=tune.RunConfig(name="tune", storage_path=str(folder), verbose=0,
                                      callbacks=[Progress()],
                                      failure_config=tune.FailureConfig(max_failures=self.spec.max_failures)))

    def _scheduler(self, folder: Path, parent_run_id: str):
        if not self.spec.stop_by_theory:
            return None
        from orchestrator.studies.theory_stop import TheoryStopRule, make_scheduler

        rule = TheoryStopRule(self.base.fit.min_rounds, self.base.fit.quantity, seed=self.base.seed)
        return make_scheduler(rule, StopRecorder(str(folder), self.uri, parent_run_id))

    # ---- the study ----
    def run(self) -> StudyResult:
        from orchestrator.roles import ray_session
        from orchestrator.store import mirror, tracking
        from orchestrator.models.source import ModelSource

        t_start, self._t0_unix = time.perf_counter(), time.time()
        started, bundles, slots = self._preflight()
        b = self.base
        sid = identity(self.spec.kind, b, self.spec.grid, self.spec.seeds, self.uri, self.experiment_name,
                       {"stop_by_theory": self.spec.stop_by_theory, **self.spec.params})
        folder = (Path(b.tracking.out_dir).expanduser() / "studies" / f"{self.spec.kind}-{sid}").absolute()
        marker = folder / "study.json"
        parent = None
        try:
            ModelSource(b.workload.name, b.workload.options, b.model.path, b.model.cache_dir).resolve()
            from ray import tune

            restore = marker.exists() and tune.Tuner.can_restore(str(folder / "tune"))
            if restore:  # Tune unpickles its state: only a folder this user's svgap wrote
                check_restorable(folder, marker, self.spec.kind, sid)
            if marker.exists():
                parent = json.loads(marker.read_text())["parent_run_id"]
                self._reopen_parent(parent)
            else:
                logger = self._new_parent(sid, slots)
                parent = logger.run_id
                self._mark_study(logger, sid, folder, marker)
            log.info(f"{self.spec.kind}: {len(self.variants)} trials ({len(self.spec.grid) or 'no'} grid axes x "
                     f"{self.spec.seeds} seed(s)), at most {slots} at a time; parent MLflow run {parent} "
                     f"({tracking.shown(self.uri)}); study folder {folder} (each trial's experiment log in logs/)"
                     + ("; restoring it" if restore else ""))
            with _quiet_tune():  # also around Tuner.restore: it warns about the result files we do not write
                tuner = self._tuner(folder, self._param_space(sid, parent, bundles, folder),
                                    self._scheduler(folder, parent), restore)
                grid = tuner.fit()
            return self._finish(grid, parent, folder, t_start, slots, restore)
        except BaseException as e:
            if parent:
                mirror.set_status(parent, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED", self.uri)
            raise
        finally:
            ray_session.shutdown(started)

    def _reopen_parent(self, parent: str) -> None:
        """A restored study's parent run runs again; a killed driver's trials ended with it."""
        from orchestrator.store import mirror, tracking

        mirror.set_status(parent, "RUNNING", self.uri)
        for r in tracking.child_runs(parent, self.uri):  # a killed driver's trials: they ended with it
            if r.info.status == "RUNNING":
                mirror.set_status(r.info.run_id, "KILLED", self.uri)

    def _new_parent(self, sid: str, slots: int):
        """The study's parent MLflow run, with the study's identity and the base config as params."""
        from orchestrator.store import mirror
        from orchestrator.store.mirror import run_params

        b = self.base
        params = {f"study.{k}": v for k, v in {"kind": self.spec.kind, "id": sid, "seeds": self.spec.seeds,
                                               "grid": json.dumps(self.spec.grid), "trials":
                                               len(self.variants), "concurrency": slots,
                                               "stop_by_theory": self.spec.stop_by_theory,
                                               **self.spec.params}.items()}
        params.update(run_params(b))
        return mirror.RunLogger(self.uri, self.experiment_name, b.tracking.run_name or self.summary.name(
            self.spec, b), redact.data(params), tags={"svgap.kind": self.summary.tag,
                                                      "svgap.study": sid})

    def _mark_study(self, logger, sid: str, folder: Path, marker: Path) -> None:
        """The config on the parent run and study.json in the folder: what a rerun restores the study from."""
        logger.log_text(redact.text(dump(self.base)), "config.yaml")
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"parent_run_id": logger.run_id, "kind": self.spec.kind, "id": sid,
                                      "grid": self.spec.grid, "seeds": self.spec.seeds}, indent=1))

    def _finish(self, grid, parent: str, folder: Path, t_start: float, slots: int, restore: bool) -> StudyResult:
        """The table from the trials' outcomes, logged on the parent run, which ends FAILED if any trial failed."""
        from orchestrator.store import mirror

        from orchestrator.studies.outcomes import read_outcomes

        outcomes, ran = read_outcomes(grid, self.variants, parent, folder, self.uri, self._t0_unix)
        table = self.summary.summarize(outcomes, self.base, self.spec)
        wall = time.perf_counter() - t_start
        table["summary"].update(wall_s=wall, concurrency=slots, trials_run=ran)
        for path in self.summary.write(table, folder):
            mirror.log_artifact(parent, path, uri=self.uri)
        mirror.log_metrics(parent, self.summary.metrics(table), step=0, uri=self.uri)
        failed = [o for o in outcomes if o.error]
        mirror.set_status(parent, "FAILED" if failed else "FINISHED", self.uri)
        return StudyResult(parent, self.uri, table, outcomes, slots, wall, folder, restore, ran)


def check_restorable(folder: Path, marker: Path, kind: str, sid: str) -> None:
    """Restoring a study unpickles Tune's state (code, in effect): refuse a folder another user could have written
    (a symlink, a foreign owner, writable by others) or one whose study.json svgap did not write for this study."""
    from orchestrator.store.trust import untrusted

    why = untrusted(folder, group_may_write=True)  # the study folder follows the umask, like run folders
    if why is None:
        try:
            mark = json.loads(marker.read_text())
        except (OSError, ValueError):
            mark = None
        if not isinstance(mark, dict) or (mark.get("kind"), mark.get("id")) != (kind, sid) \
                or not mark.get("parent_run_id"):
            why = f"{marker.name} is not the one svgap writes for this {kind} (id {sid})"
    if why:
        raise SvgapError(f"study folder {folder}: not restoring it ({why}): Tune's state is unpickled on restore, "
                         f"so only a folder of your own that svgap wrote is loaded; move it away to start afresh")


class _quiet_tune:
    """Tune and Ray Train log warnings and tips at INFO/WARNING; the study prints its own progress lines."""

    NAMES = ("ray.tune", "ray.train", "ray.air", "ray.data")

    def __enter__(self):
        self.levels = {n: logging.getLogger(n).level for n in self.NAMES}
        for n in self.NAMES:
            logging.getLogger(n).setLevel(logging.CRITICAL)
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # a finished trial is on disk within 2 s
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter at verbose=0 prints nothing
        return self

    def __exit__(self, *exc):
        for n, lvl in self.levels.items():
            logging.getLogger(n).setLevel(lvl)
        return False
