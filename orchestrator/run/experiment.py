"""The controller: checks everything, owns the pools, runs rounds 0..T, writes round records, logs (online_fit.py fits).

It is the only place that knows the order of stages. Round t measures π_t (its record), then trains on its BoN
picks to make π_{t+1} and syncs it; the last round only measures.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from orchestrator import redact
from orchestrator.log import RunLog

from orchestrator.roles import placement

from orchestrator.roles import pools as pool_start

from orchestrator.roles import ray_session

from orchestrator.run import round_health, update_refs

from orchestrator.store import outbox, tracking
from orchestrator.engines.registry import check_model, engine_options
from orchestrator.config import ExperimentConfig, dump
from orchestrator.errors import SvgapError
from orchestrator.models.source import ModelSource
from orchestrator.run.online_fit import OnlineFit
from orchestrator.roles.pools import Pools
from orchestrator.roles.roles import PlacementPlan
from orchestrator.run.resume import ResumePoint, describe
from orchestrator.run.round import Decision, RoundResult, RoundRunner, derive_seed
from orchestrator.store.records import RoundRecord
from orchestrator.store.mirror import RunLogger, run_params
from orchestrator.store.keep import keep_external, keep_fit
from orchestrator.store.run_store import RoundLog, RunFiles, check_writable
from orchestrator.trainers.base import check_available as check_trainer
from orchestrator.engines.weights import check_versions


log = logging.getLogger(__name__)


@dataclass
class ExperimentResult:
    run_id: str
    tracking_uri: str
    out_dir: Path
    records: list[RoundRecord]
    fits: dict[int, dict] = field(default_factory=dict)
    stop_reason: str | None = None


class Experiment:
    def __init__(self, cfg: ExperimentConfig, *, address: str | None = None, tracking_uri: str | None = None,
                 experiment_name: str | None = None, parent_run_id: str | None = None,
                 worker_classes: dict[str, type] | None = None,
                 on_round: Callable[[RoundRecord], None] | None = None,
                 placement: dict[str, tuple[object, list[int]]] | None = None,
                 run_tags: dict[str, str] | None = None, resume: ResumePoint | None = None) -> None:
        """placement: {role: (placement group, bundle indices)} reserved by someone else (a sweep's Tune trial);
        a role left out (training) shares the generation pool's bundles. run_tags: extra tags of the MLflow run.
        resume: continue that run (orchestrator/resume.py: `svgap run --resume`) instead of starting a new one."""
        self.cfg = cfg
        self.resume = resume
        self.placement = placement
        self.engine_sizing: dict = {}  # vLLM max_model_len from the task (set in run)
        self.run_tags = dict(run_tags or {})
        self.address = address
        self.uri = tracking_uri or cfg.tracking.uri
        self.experiment_name = experiment_name or cfg.tracking.experiment
        self.parent_run_id = parent_run_id
        self.on_round = on_round
        self.classes = dict(worker_classes or {})  # role -> actor class in place of the role table's (tests)

    # ---- checks that must pass before any round (nothing logged until they do) ----
    def _preflight(self):
        from orchestrator.engines.chat import workload_for

        cfg = self.cfg
        workload = workload_for(cfg)  # told whether the model reads its texts through a chat template
        scheduler = None
        if cfg.external.strategy != "none":
            from orchestrator.run.scheduler import build_scheduler

            scheduler = build_scheduler(cfg, workload)
        check_writable(Path(cfg.tracking.out_dir), "tracking.out_dir")
        self.uri = tracking.preflight(self.uri)  # writes nothing
        started = ray_session.connect(self.address)
        try:
            ray_session.check_capacity(cfg)
        except SvgapError:
            ray_session.shutdown(started)
            raise
        return workload, scheduler, started

    def _pools(self, source: ModelSource) -> Pools:
        """Every pool of the placement plan (roles/roles.py), started; a sweep trial's reserved bundles decide
        whether training shares the generation pool's."""
        cfg, r = self.cfg, self.cfg.resources
        check_trainer(cfg.training.engine)
        shared = None if self.placement is None else "training" not in self.placement
        plan = PlacementPlan.build(cfg, shared=shared)
        log.info("starting pools: " + ", ".join(f"{p.name} x{p.resources.actors}" for p in plan.started()))
        if plan.shared("training"):
            log.info(f"training x{r.training.actors} shares the generation pool's bundles "
                     f"(resources.colocate_training={r.colocate_training}: a round trains only after it has "
                     f"generated and verified)")
        return pool_start.start(plan, cfg, source, self.classes, {**engine_options(cfg), **self.engine_sizing},
                                self.placement)

    def run(self) -> ExperimentResult:
        cfg = self.cfg
        workload, scheduler, started = self._preflight()
        pools: Pools | None = None
        logger: RunLogger | None = None
        files: RunFiles | None = None
        run_log = RunLog()  # <run folder>/log.jsonl, from this line on
        try:
            source = self._model(workload)
            pools = self._pools(source)
            where = self._placed(pools)
            heldout = workload.problems("heldout", cfg.workload.heldout_prompts, derive_seed(cfg.seed, "heldout"))
            runner = RoundRunner(cfg, workload, pools, heldout)
            logger, files = self._open_run()
            run_log.open(files.root)
            logger.log_dict(where, "placement.json")  # where each actor landed (roles/placement.py)
            result = ExperimentResult(logger.run_id, self.uri, files.root, [])
            self._rounds(runner, pools, logger, files, result, scheduler)
            logger.end("FINISHED")
            return result
        except BaseException as e:
            if logger:
                logger.abort(e)
            raise
        finally:
            if files:
                files.release()
            if pools:
                pools.shutdown()
            ray_session.shutdown(started)
            run_log.close()

    def _model(self, workload) -> ModelSource:
        """The policy's model folder, built or checked (and, for vLLM, the engine sized) before any pool starts."""
        cfg = self.cfg
        source = ModelSource.of(cfg)
        t0 = time.perf_counter()
        model_dir = source.resolve()
        check_model(cfg.model.engine, model_dir)  # e.g. a head_dim the engine has no kernel for: one line, no pools
        if cfg.model.engine == "vllm":  # context and KV cache from the task, checked before any engine starts
            from orchestrator.engines.vllm_sizing import size_engine

            self.engine_sizing = size_engine(cfg, workload, model_dir, source.system_prompt)
        log.info(f"model: {model_dir} ready in {time.perf_counter() - t0:.1f}s")
        return source

    def _placed(self, pools: Pools) -> dict[str, list[dict]]:
        """Where each actor landed, said and returned for the run's placement.json."""
        placed = [(name, g.nodes()) for name, g in pools.groups.items()]
        log.info("placed: " + ", ".join(f"{role} x{len(n)} on {len(set(n))} node(s)" for role, n in placed))
        where = placement.report(pools.groups.values())
        for line in placement.lines(where):
            log.info(line)
        return where

    def _open_run(self) -> tuple[RunLogger, RunFiles]:
        """A new MLflow run and its folder, or (resume) the existing run reattached and its folder."""
        cfg = self.cfg
        if self.resume is not None:
            point = self.resume
            files = RunFiles(point.run_dir)
            files.hold()  # first: a driver that started meanwhile keeps its run to itself
            logger = RunLogger.reattach(self.uri, point.run_id)
            left = outbox.read(files.root)  # what the dead driver could not send (its metrics: from the records)
            files.remove_partial(point.version)
            logger.keep_outbox(files.root)
            logger.replay(left)
            files.note_resume(point.note())
            log.info(describe(point))
            for t, metrics in sorted(point.missing.items()):  # e.g. held during a tracking outage, then killed
                logger.log_metrics(metrics, step=t)
            return logger, files
        cfg_text = redact.text(dump(cfg))  # saved config, artifact and params never carry a password
        logger = RunLogger(self.uri, self.experiment_name, cfg.tracking.run_name,
                                    redact.data(run_params(cfg)), self.parent_run_id,
                                    tags=self.run_tags or None)
        logger.log_text(cfg_text, "config.yaml")
        files = RunFiles(Path(cfg.tracking.out_dir) / logger.run_id)
        files.prepare(cfg_text)
        files.hold()
        logger.keep_outbox(files.root)
        log.info(f"MLflow run {logger.run_id} ({tracking.shown(self.uri)}); round files in {files.root}")
        return logger, files

    def _restore(self, pools: Pools, result: ExperimentResult, scheduler) -> tuple[int, int]:
        """Resume: the finished rounds' records and fits, the scheduler's state, and π_version published to the fresh
        inference actors and put back into the trainer. Returns (first round to run, model version)."""
        point = self.resume
        if point is None:
            return 0, 0
        result.records.extend(point.records)
        result.fits.update(point.fits)
        if scheduler is not None and point.scheduler is not None:
            scheduler.restore(point.scheduler)
        if point.version > 0:
            ref = update_refs.load(point.update_path, point.version, self.cfg.resources.timeout_s)
            pools.publish(ref, point.version)
            check_versions(pools.trainer.restore(ref), point.version)
        return point.last_round + 1, point.version

    def _rounds(self, runner: RoundRunner, pools: Pools, logger, files: RunFiles, result: ExperimentResult,
                scheduler) -> None:
        """Rounds (first)..T, each one unit (run/round.py); this loop decides and persists. Round t's files are
        written, then its metrics go to MLflow in one batch, then state.json commits it: a driver killed before
        the commit has round t redone by a resume."""
        online = OnlineFit(self.cfg)
        if scheduler is not None:
            scheduler.attach()
        first, version = self._restore(pools, result, scheduler)
        skip = self.resume.logged if self.resume else set()
        for t in range(first, self.cfg.rounds + 1):
            round_log = RoundLog(logger, skip)
            stops: list[str | None] = []
            out = runner.run(t, version, lambda record: self._decide(t, record, result, online, round_log, files,
                                                                     scheduler, stops))
            version = out.version
            result.records.append(out.record)
            self._persist(t, out, stops[0], round_log, logger, files, scheduler)
            if self.on_round:
                self.on_round(out.record)
            if stops[0]:
                result.stop_reason = stops[0]
                log.info(f"stopping early after measuring round {t}: {stops[0]}")
                break

    def _decide(self, t: int, record: RoundRecord, result: ExperimentResult, online: OnlineFit, round_log: RoundLog,
                files: RunFiles, scheduler, stops: list) -> Decision:
        """Round t is measured: warn, fit on rounds 0..t before training (a stop leaves π_t, the last measured
        model, as the result), and say whether to train π_{t+1} and on which external examples."""
        records = result.records + [record]
        for line in round_health.warnings(records):
            log.warning(line)
        fit, stop = online.after_round(t, records, scheduler)
        stops.append(stop)
        if fit is not None:
            result.fits[t] = fit
            keep_fit(files, round_log, t, fit)
        if t >= self.cfg.rounds or stop:
            return Decision(False)
        if scheduler is None:
            return Decision(True)
        external = scheduler.examples(t, records)
        return Decision(True, tuple(external), scheduler.metrics(t))

    def _persist(self, t: int, out: RoundResult, stop: str | None, round_log: RoundLog, logger, files: RunFiles,
                 scheduler) -> None:
        """Round t's files (the new version, picks, record), its MLflow batch, then the commit (state.json)."""
        record = out.record
        if out.update is not None:  # adapters/vNNN.npz or weights/vNNN.npz, staged (committed by files.state)
            update_refs.save(files.root, out.update, self.cfg.resources.timeout_s)
        files.picks(t, list(out.rows))
        files.record(record)
        keep_external(files, round_log, scheduler.take() if scheduler else [])
        round_log.log_metrics(record.flat_metrics(), step=t)
        round_log.flush()  # the fit's and the round's metrics of step t: one batch
        logger.log_file(files.root / "picks" / f"round_{t:03d}.jsonl", "picks")
        if stop:
            logger.set_tag("svgap.stop_reason", stop)
        files.state(t, out.version, logger.run_id, stop, scheduler.state() if scheduler else None)
        m = record.metrics
        log.info(f"round {t}/{self.cfg.rounds} done in {record.timings['round']:.1f}s: U_s {m['U_s']:.3f} "
                 f"U_v {m['U_v']:.3f} G {m['G']:.3f} acc_s {m['acc_s']:.3f} acc_v {m['acc_v']:.3f} "
                 f"held-out {m['heldout_acc']:.3f}", extra={"round": t})
