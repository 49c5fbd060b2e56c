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

from orchestrator.roles import ray_session

from orchestrator.run import round_health

from orchestrator.store import tracking
from orchestrator.engines.registry import check_model, engine_options
from orchestrator.config import ExperimentConfig, dump
from orchestrator.errors import SvgapError
from orchestrator.models.source import ModelSource
from orchestrator.run.online_fit import OnlineFit
from orchestrator.roles.generation import GenerationWorker
from orchestrator.roles.group import ActorGroup, PoolSpec
from orchestrator.roles.training import TrainingWorker
from orchestrator.roles.verification import VerificationWorker
from orchestrator.roles.worker import WorkerSpec
from orchestrator.run.resume import ResumePoint, describe, load_update
from orchestrator.run.round import Pools, RoundRunner, derive_seed
from orchestrator.store.records import RoundRecord
from orchestrator.store.tracking import run_params
from orchestrator.store.run_store import RoundLog, RunFiles, check_writable
from orchestrator.trainers.base import check_available as check_trainer
from orchestrator.engines.weights import check_same_base, check_versions, publish, save_update


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
        self.classes = {"generation": GenerationWorker, "verification": VerificationWorker,
                        "training": TrainingWorker, **(worker_classes or {})}

    # ---- checks that must pass before any round (nothing logged until they do) ----
    def _preflight(self):
        import workloads

        cfg = self.cfg
        workload = workloads.for_config(cfg)  # told whether the model reads its texts through a chat template
        scheduler = None
        if cfg.external.strategy != "none":
            from orchestrator.run.scheduler import build_scheduler

            scheduler = build_scheduler(cfg, workload)
        check_writable(Path(cfg.tracking.out_dir), "tracking.out_dir")
        self.uri = tracking.preflight(self.uri)  # writes nothing
        started = ray_session.connect(self.address)
        try:
            ray_session.check_capacity(cfg.resources)
        except SvgapError:
            ray_session.shutdown(started)
            raise
        return workload, scheduler, started

    def _pools(self, source: ModelSource) -> Pools:
        cfg, r = self.cfg, self.cfg.resources

        def spec(role: str) -> tuple[PoolSpec, WorkerSpec]:
            res = getattr(r, role)
            return (PoolSpec(role, res, r.placement, r.timeout_s, r.retries),
                    WorkerSpec(role, source, cfg.model.device, cfg.model.dtype, res.cpus, res.threads,
                               cfg.model.engine, {**engine_options(cfg), **self.engine_sizing}))

        g, v, t = spec("generation"), spec("verification"), spec("training")
        check_trainer(cfg.training.engine)
        where = self.placement or {}
        colocate = ray_session.training_colocates(r) if self.placement is None else "training" not in where

        def group(role: str, pool: tuple[PoolSpec, WorkerSpec], *args, **kwargs) -> ActorGroup:
            if role in where and kwargs.get("host") is None:
                kwargs.update(pg=where[role][0], bundle_indices=where[role][1])
            return ActorGroup(pool[0], self.classes[role], pool[1], *args, **kwargs)

        if colocate:  # threads: what the host bundle reserves, as for the generation actor that takes turns on it
            t = (t[0], WorkerSpec("training", source, cfg.model.device, cfg.model.dtype, r.generation.cpus,
                                  r.training.threads))
            log.info(f"training x{r.training.actors} shares the generation pool's bundles "
                     f"(resources.colocate_training={r.colocate_training}: a round trains only after it has "
                     f"generated and verified)")
        built: list[ActorGroup] = []
        try:
            built.append(group("generation", g))
            built.append(group("verification", v))
            # a rank group: actor 0 picks MASTER_ADDR/PORT, every rank builds its trainer (torch: one rank)
            built.append(group("training", t, cfg.training, cfg.seed, ranks=True,
                               host=built[0] if colocate else None))
            # Block until every actor has built its engine, so a broken model fails here, named by pool.
            for pool in built:
                pool.call_all("start", "version")
            check_same_base({f"{pool.spec.role}[{i}]": fp for pool in built
                             for i, fp in enumerate(pool.call_all("start", "base_fingerprint"))})
        except BaseException:
            for pool in built:  # a later pool failed: free the placement groups of the earlier ones
                pool.shutdown()
            raise
        return Pools(*built)

    def run(self) -> ExperimentResult:
        cfg = self.cfg
        workload, scheduler, started = self._preflight()
        pools: Pools | None = None
        logger: tracking.RunLogger | None = None
        files: RunFiles | None = None
        run_log = RunLog()  # <run folder>/log.jsonl, from this line on
        try:
            source = ModelSource.of(cfg)
            t0 = time.perf_counter()
            model_dir = source.resolve()
            check_model(cfg.model.engine, model_dir)  # e.g. a head_dim the engine has no kernel for: one line, no pools
            if cfg.model.engine == "vllm":  # context and KV cache from the task, checked before any engine starts
                from orchestrator.engines.vllm_sizing import size_engine

                self.engine_sizing = size_engine(cfg, workload, model_dir, source.system_prompt)
            log.info(f"model: {model_dir} ready in {time.perf_counter() - t0:.1f}s")
            log.info(f"starting pools: generation x{cfg.resources.generation.actors}, verification "
                     f"x{cfg.resources.verification.actors}, training x{cfg.resources.training.actors}")
            pools = self._pools(source)
            placed = [(p.spec.role, p.nodes()) for p in (pools.generation, pools.verification, pools.training)]
            log.info("placed: " + ", ".join(f"{role} x{len(n)} on {len(set(n))} node(s)" for role, n in placed))
            where = placement.report((pools.generation, pools.verification, pools.training))
            for line in placement.lines(where):
                log.info(line)
            heldout = workload.problems("heldout", cfg.workload.heldout_prompts, derive_seed(cfg.seed, "heldout"))
            runner = RoundRunner(cfg, workload, pools, heldout)
            logger, files = self._open_run()
            run_log.open(files.root)
            logger.log_dict(where, "placement.json")  # where each actor landed (orchestrator/placement.py)
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
                for p in (pools.generation, pools.verification, pools.training):
                    p.shutdown()
            ray_session.shutdown(started)
            run_log.close()

    def _open_run(self) -> tuple[tracking.RunLogger, RunFiles]:
        """A new MLflow run and its folder, or (resume) the existing run reattached and its folder."""
        cfg = self.cfg
        if self.resume is not None:
            point = self.resume
            files = RunFiles(point.run_dir)
            files.hold()  # first: a driver that started meanwhile keeps its run to itself
            logger = tracking.RunLogger.reattach(self.uri, point.run_id)
            files.remove_partial()
            files.note_resume(point.note())
            log.info(describe(point))
            for t, metrics in sorted(point.missing.items()):  # e.g. held during a tracking outage, then killed
                logger.log_metrics(metrics, step=t)
            return logger, files
        cfg_text = redact.text(dump(cfg))  # saved config, artifact and params never carry a password
        logger = tracking.RunLogger(self.uri, self.experiment_name, cfg.tracking.run_name,
                                    redact.data(run_params(cfg)), self.parent_run_id,
                                    tags=self.run_tags or None)
        logger.log_text(cfg_text, "config.yaml")
        files = RunFiles(Path(cfg.tracking.out_dir) / logger.run_id)
        files.prepare(cfg_text)
        files.hold()
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
            update = load_update(point.update_path)
            ref = publish(update)
            check_versions({f"{p.spec.role}[{i}]": v for p in (pools.generation, pools.verification)
                            for i, v in enumerate(p.call_all("sync", "load_weights", ref))}, point.version)
            check_versions({f"training[{i}]": v for i, v in
                            enumerate(pools.training.call_all("sync", "restore_update", ref))}, point.version)
        return point.last_round + 1, point.version

    def _rounds(self, runner: RoundRunner, pools: Pools, logger, files: RunFiles, result: ExperimentResult,
                scheduler) -> None:
        """Rounds (first)..T. Round t's files are written, then its metrics go to MLflow in one batch, then
        state.json commits it: a driver killed before the commit has round t redone by a resume."""
        cfg = self.cfg
        online = OnlineFit(cfg)
        if scheduler is not None:
            scheduler.attach(logger, files.root)
        first, version = self._restore(pools, result, scheduler)
        skip = self.resume.logged if self.resume else set()
        for t in range(first, cfg.rounds + 1):
            t_round = time.perf_counter()
            faults0 = pools.faults()  # lost actors replaced in this round: its record says how many
            round_log = RoundLog(logger, skip)
            record, picks, pick_ids = runner.measure(t, version)
            result.records.append(record)
            for line in round_health.warnings(result.records):
                log.warning(line)
            rows = list(picks)
            # fit on rounds 0..t before training: a stop leaves π_t, the last measured model, as the result
            fit, stop = online.after_round(t, result.records, round_log, scheduler)
            if fit is not None:
                result.fits[t] = fit
                files.fit(t, fit)
            if t < cfg.rounds and not stop:
                external = scheduler.examples(t, result.records) if scheduler else []
                stats, update, ext_rows = runner.train(t, picks, pick_ids, external)
                rows += ext_rows
                t_sync = time.perf_counter()
                ref = publish(update)
                check_versions({f"{p.spec.role}[{i}]": v for p in (pools.generation, pools.verification)
                                for i, v in enumerate(p.call_all("sync", "load_weights", ref))}, update.version)
                version = update.version
                record.timings["train"] = stats.seconds
                record.timings["sync"] = time.perf_counter() - t_sync
                save_update(files.root, update)  # adapters/vNNN.npz, or weights/vNNN.npz (the latest only)
                record.train = {"loss_first": stats.loss_first, "loss_last": stats.loss_last,
                                "examples": stats.examples, "external": stats.external, "tokens": stats.tokens,
                                "sync_bytes": update.nbytes()}
                record.counts["external"] = len(ext_rows)
                if scheduler:
                    record.metrics.update(scheduler.metrics(t))
            record.metrics.update(pools.peak_memory_mb())
            record.timings["round"] = time.perf_counter() - t_round
            files.picks(t, rows)
            record.counts.update(pools.faults_since(faults0))
            files.record(record)
            round_log.log_metrics(record.flat_metrics(), step=t)
            round_log.flush()  # the fit's and the round's metrics of step t: one batch
            logger.log_file(files.root / "picks" / f"round_{t:03d}.jsonl", "picks")
            if stop:
                logger.set_tag("svgap.stop_reason", stop)
            files.state(t, version, logger.run_id, stop, scheduler.state() if scheduler else None)
            m = record.metrics
            log.info(f"round {t}/{cfg.rounds} done in {record.timings['round']:.1f}s: U_s {m['U_s']:.3f} "
                     f"U_v {m['U_v']:.3f} G {m['G']:.3f} acc_s {m['acc_s']:.3f} acc_v {m['acc_v']:.3f} "
                     f"held-out {m['heldout_acc']:.3f}", extra={"round": t})
            if self.on_round:
                self.on_round(record)
            if stop:
                result.stop_reason = stop
                log.info(f"stopping early after measuring round {t}: {stop}")
                break
