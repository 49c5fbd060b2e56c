"""The allocation study behind `svgap allocate` (docs/theory.md §5): one experiment per (strategy, seed) with the same
budget M of external data, nested MLflow runs under one parent run, run concurrently on the shared Ray cluster as
far as its resources allow, then the paper-style table.

Table, per strategy (means over seeds, ± the standard deviation over seeds):
    initial / final held-out accuracy (rounds 0 and T), gain of the final accuracy over `none`,
    fitted U_s,inf (for `none`: theory.fit.fit_gap on rounds 0..T; for a run with external data: the gap model and
    that run's γ simulated through its own allocation, so the jumps are not misread as self-improvement),
    fitted γ (theory.allocation.fit_gamma on the run's U_s/U_v and external/eta, with the gap model fitted on the
    `none` run of the same seed), predicted U_s at round T under the run's realised allocation (the `none` model and
    the median γ over all runs), and the predicted and observed ranks.
Summary: the spread (max - min of the seed-mean final held-out accuracy) between external strategies next to their
mean gain over `none` -- the paper's "the timing barely matters" is spread << gain.
"""
from __future__ import annotations

import copy
import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from orchestrator import config as config_mod
from orchestrator import redact
from orchestrator.allocation_table import summarize, to_csv, to_markdown
from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError

STRATEGIES = ("none", "early", "uniform", "late", "explicit", "planned")
DEFAULT_STRATEGIES = ("none", "early", "uniform", "late")


@dataclass
class Variant:
    strategy: str
    seed: int
    cfg: ExperimentConfig

    @property
    def label(self) -> str:
        return f"{self.strategy} seed {self.seed}"


@dataclass
class Outcome:
    variant: Variant
    run_id: str | None = None
    records: list = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def parse_strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise SvgapError("--strategies: name at least one of " + ", ".join(STRATEGIES))
    for n in names:
        if n not in STRATEGIES:
            raise SvgapError(f"--strategies: unknown strategy {n!r} (choose from {', '.join(STRATEGIES)})")
    if len(set(names)) != len(names):
        raise SvgapError(f"--strategies: duplicate strategy in {text!r}")
    return names


def build_variants(data: dict, budget: int | None, strategies: list[str], seeds: int) -> tuple[ExperimentConfig,
                                                                                              list[Variant]]:
    """The base config and one validated config per (strategy, seed): seed = base seed + k, k = 0..seeds-1."""
    if seeds < 1:
        raise SvgapError(f"--seeds must be >= 1, got {seeds}")
    base_data = copy.deepcopy(data)
    if budget is not None:
        if budget < 1:
            raise SvgapError(f"--budget must be >= 1, got {budget}")
        base_data.setdefault("external", {})["budget"] = budget
    base = config_mod.from_mapping(base_data)
    if any(s != "none" for s in strategies) and base.external.budget < 1:
        raise SvgapError("--budget: required (the config's external.budget is 0)")
    variants = []
    for strategy in strategies:
        for k in range(seeds):
            d = copy.deepcopy(base_data)
            d.setdefault("external", {})["strategy"] = strategy
            d["seed"] = base.seed + k
            d.setdefault("tracking", {})["run_name"] = f"{strategy} seed {base.seed + k}"
            try:
                cfg = config_mod.from_mapping(d)
            except SvgapError as e:
                raise SvgapError(f"strategy {strategy}: {e}") from None
            variants.append(Variant(strategy, base.seed + k, cfg))
    return base, variants


def check_schedulers(variants: list[Variant], workload) -> None:
    """build_scheduler on every variant: a bad source / budget / planned setting fails before anything runs."""
    from orchestrator.scheduler import build_scheduler

    for v in variants:
        if v.strategy == "none":
            continue
        try:
            build_scheduler(v.cfg, workload)
        except SvgapError as e:
            raise SvgapError(f"strategy {v.strategy}: {e}") from None


def concurrency(want: dict[str, float], have: dict[str, float]) -> int:
    """How many experiments the cluster holds at once: min over CPU/GPU of floor(have / want), at least 1."""
    slots = []
    for kind in ("CPU", "GPU"):
        w = want.get(kind, 0.0)
        if w > 0:
            slots.append(int(math.floor(have.get(kind, 0.0) / w + 1e-9)))
    return max(1, min(slots)) if slots else 1


# ---- the study ------------------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    parent_run_id: str
    tracking_uri: str
    table: dict
    outcomes: list[Outcome]
    concurrency: int
    seconds: float
    out_dir: Path


class AllocationStudy:
    """Validate every variant, start Ray once, run the experiments (concurrently as the cluster allows) as nested
    runs of one parent run, then build, print and log the table."""

    def __init__(self, data: dict, *, budget: int | None, strategies: list[str], seeds: int,
                 address: str | None = None, tracking_uri: str | None = None, experiment_name: str | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        from orchestrator.experiment import _stderr

        self.base, self.variants = build_variants(data, budget, strategies, seeds)
        self.strategies, self.seeds = strategies, seeds
        self.address = address
        self.uri = tracking_uri or self.base.tracking.uri
        self.experiment_name = experiment_name or self.base.tracking.experiment
        self.progress = progress or _stderr
        self._lock = threading.Lock()

    def _say(self, msg: str) -> None:
        with self._lock:
            self.progress(redact.text(msg))

    def _preflight(self) -> tuple[bool, int]:
        import ray

        import workloads
        from orchestrator import ray_session, tracking
        from orchestrator.experiment import check_writable

        workload = workloads.get(self.base.workload.name, self.base.workload.options)
        check_schedulers(self.variants, workload)
        # every child writes its run folder there: an unwritable one must stop the study before the parent run
        for out_dir in sorted({v.cfg.tracking.out_dir for v in self.variants} | {self.base.tracking.out_dir}):
            check_writable(Path(out_dir), "tracking.out_dir")
        started = ray_session.connect(self.address)
        try:
            for v in self.variants:
                ray_session.check_capacity(v.cfg.resources)
            have = ray.cluster_resources()
            slots = min(concurrency(ray_session.requested(v.cfg.resources), have) for v in self.variants)
            self.uri = tracking.preflight(self.uri)
        except SvgapError:
            ray_session.shutdown(started)
            raise
        return started, min(slots, len(self.variants))

    def _one(self, v: Variant, parent_run_id: str, index: int) -> Outcome:
        from orchestrator.experiment import Experiment

        out = Outcome(v)
        tag = f"[{index + 1}/{len(self.variants)} {v.label}]"
        self._say(f"{tag} starting")
        t0 = time.perf_counter()
        try:
            res = Experiment(v.cfg, tracking_uri=self.uri, experiment_name=self.experiment_name,
                             parent_run_id=parent_run_id, progress=lambda m: self._say(f"{tag} {m}")).run()
            out.run_id, out.records = res.run_id, res.records
        except Exception as e:  # one failed experiment does not stop the study; the table names it
            first = redact.text((str(e).strip().splitlines() or [""])[0])
            out.error = f"{type(e).__name__}: {first}" if not isinstance(e, SvgapError) else first
            self._say(f"{tag} FAILED: {out.error}")
        out.seconds = time.perf_counter() - t0
        if out.error is None:
            acc = out.records[-1].metrics["heldout_acc"]
            self._say(f"{tag} done in {out.seconds:.0f}s: held-out acc {out.records[0].metrics['heldout_acc']:.3f}"
                      f" -> {acc:.3f} (run {out.run_id})")
        return out

    def run(self) -> StudyResult:
        from orchestrator import ray_session, tracking
        from orchestrator.model_source import ModelSource
        from orchestrator.typed import flatten, to_dict

        t_start = time.perf_counter()
        started, slots = self._preflight()
        logger = None
        try:
            b = self.base
            # Build (or find) the base model once, so concurrent experiments never race on its cache.
            ModelSource(b.workload.name, b.workload.options, b.model.path, b.model.cache_dir).resolve(self.progress)
            params = {f"study.{k}": v for k, v in (("budget", b.external.budget),
                                                   ("strategies", ",".join(self.strategies)),
                                                   ("seeds", self.seeds), ("concurrency", slots))}
            params.update(flatten(to_dict(b)))
            params = redact.data(params)
            logger = tracking.RunLogger(self.uri, self.experiment_name,
                                        b.tracking.run_name or f"allocate M={b.external.budget}", params,
                                        tags={"svgap.kind": "allocation_study"})
            logger.log_text(redact.text(config_mod.dump(b)), "config.yaml")
            self._say(f"allocation study: {len(self.variants)} experiments ({', '.join(self.strategies)} x "
                      f"{self.seeds} seed(s)), budget {b.external.budget}, {slots} at a time; parent MLflow run "
                      f"{logger.run_id} ({tracking.shown(self.uri)})")
            with ThreadPoolExecutor(max_workers=slots, thread_name_prefix="svgap-allocate") as pool:
                futures = [pool.submit(self._one, v, logger.run_id, i) for i, v in enumerate(self.variants)]
                try:
                    outcomes = [f.result() for f in futures]
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
            table = summarize(outcomes, b)
            wall = time.perf_counter() - t_start
            table["summary"]["wall_s"] = wall
            table["summary"]["concurrency"] = slots
            table["runs"] = [{"strategy": o.variant.strategy, "seed": o.variant.seed, "run_id": o.run_id,
                              "seconds": o.seconds, "error": o.error} for o in outcomes]
            out_dir = Path(b.tracking.out_dir) / logger.run_id
            out_dir.mkdir(parents=True, exist_ok=True)
            files = {"allocation_table.json": json.dumps(redact.data(table), indent=1),
                     "allocation_table.md": to_markdown(table), "allocation_table.csv": to_csv(table)}
            for name, text in files.items():
                (out_dir / name).write_text(redact.text(text))
                logger.log_file(out_dir / name)
            s = table["summary"]
            metrics = {f"final_acc/{x['strategy']}": x["final_acc"] for x in table["rows"]
                       if x["final_acc"] is not None}
            metrics.update({k: s[k] for k in ("external_spread", "external_mean_gain", "gamma_pooled", "wall_s")
                            if s.get(k) is not None})
            logger.log_metrics(metrics, step=0)
            failed = [o for o in outcomes if o.error]
            logger.end("FAILED" if failed else "FINISHED")
            return StudyResult(logger.run_id, self.uri, table, outcomes, slots, wall, out_dir)
        except BaseException as e:
            if logger:
                logger.abort(e)
            raise
        finally:
            ray_session.shutdown(started)
