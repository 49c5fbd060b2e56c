"""The allocation study behind `svgap allocate` (THEORY §3): one experiment per (strategy, seed) with the same
budget M of external data, nested MLflow runs under one parent run, run concurrently on the shared Ray cluster as
far as its resources allow, then the paper-style table.

Table, per strategy (means over seeds, ± the standard deviation over seeds):
    initial / final held-out accuracy (rounds 0 and T), gain of the final accuracy over `none`,
    fitted U_s,inf (theory.fit.fit_gap on the run's rounds 0..T),
    fitted γ (theory.allocation.fit_gamma on the run's U_s/U_v and external/eta, with the gap model fitted on the
    `none` run of the same seed), predicted U_s at round T under the run's realised allocation (the `none` model and
    the median γ over all runs), and the predicted and observed ranks.
Summary: the spread (max - min of the seed-mean final held-out accuracy) between external strategies next to their
mean gain over `none` -- the paper's "the timing barely matters" is spread << gain.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from orchestrator import config as config_mod
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


# ---- the table ------------------------------------------------------------------------------------------------------
def _mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _series(records: list, quantity: str) -> tuple[list[int], list[float], list[float]]:
    sfx = "" if quantity == "total" else "_per_token"
    return ([r.round for r in records], [r.metrics["U_s" + sfx] for r in records],
            [r.metrics["U_v" + sfx] for r in records])


def _eta(records: list, rounds: int) -> list[float]:
    by = {r.round: r.metrics.get("external/eta", 0.0) for r in records}
    return [float(by.get(t, 0.0)) for t in range(rounds)]


def summarize(outcomes: list[Outcome], base: ExperimentConfig) -> dict:
    """The study table (rows per strategy) and its summary, as plain JSON-able data."""
    from orchestrator.theory.allocation import fit_gamma, plan
    from orchestrator.theory.fit import fit_gap

    quantity = base.fit.quantity
    ok = [o for o in outcomes if o.error is None and o.records]
    strategies = list(dict.fromkeys(o.variant.strategy for o in outcomes))
    per: dict[tuple[str, int], dict] = {}
    for o in ok:
        t, S, V = _series(o.records, quantity)
        row = {"initial": o.records[0].metrics["heldout_acc"], "final": o.records[-1].metrics["heldout_acc"],
               "rounds": t, "U_s": S, "U_v": V, "eta": _eta(o.records, base.rounds), "fit": None, "gamma": None}
        try:
            f = fit_gap(t, S, V, n_boot=0, quantity=quantity)
            row["fit"] = f if f.decaying else None
        except SvgapError:
            pass
        per[(o.variant.strategy, o.variant.seed)] = row
    # gamma per external run: the `none` run of the same seed gives the self-improvement model
    notes = []
    for (s, seed), row in per.items():
        if s == "none" or not any(row["eta"]):
            continue
        model = per.get(("none", seed), {}).get("fit")
        eta = dict(enumerate(row["eta"]))
        try:
            if model is not None:
                row["gamma"] = fit_gamma(row["rounds"], row["U_s"], row["U_v"], eta, model=model).gamma
            elif len(row["rounds"]) >= 6:
                row["gamma"] = fit_gamma(row["rounds"], row["U_s"], row["U_v"], eta).gamma
        except SvgapError as e:
            notes.append(f"gamma of {s} seed {seed}: {e}")
    gammas = [r["gamma"] for r in per.values() if r["gamma"] is not None]
    gamma = statistics.median(gammas) if gammas else None
    # predicted U_s at round T: each seed's `none` model, the pooled gamma, each run's realised allocation
    predicted: dict[str, list[float]] = {s: [] for s in strategies}
    if gamma is not None:
        for seed in sorted({sd for (_, sd) in per}):
            model = per.get(("none", seed), {}).get("fit")
            if model is None:
                continue
            shares = {s: per[(s, seed)]["eta"] for s in strategies
                      if s != "none" and (s, seed) in per and abs(sum(per[(s, seed)]["eta"]) - 1) < 1e-6}
            try:
                pl = plan(model, gamma, base.rounds, shares, "horizon") if shares else None
            except SvgapError as e:
                notes.append(f"prediction for seed {seed}: {e}")
                continue
            if pl is not None:
                for s, out in pl.outcomes.items():
                    predicted[s].append(out.U_s_T)
                predicted.setdefault("none", []).append(pl.baseline.U_s_T)
    elif "none" in strategies:
        notes.append("no gamma could be fitted: no predicted ordering")
    else:
        notes.append("no `none` strategy in the study: no gap model to fit gamma on or predict with")

    rows = []
    for s in strategies:
        seeds = sorted(sd for (st, sd) in per if st == s)
        r = [per[(s, sd)] for sd in seeds]
        failed = [o.variant.seed for o in outcomes if o.variant.strategy == s and o.error is not None]
        ini, ini_sd = _mean_sd([x["initial"] for x in r])
        fin, fin_sd = _mean_sd([x["final"] for x in r])
        lim, lim_sd = _mean_sd([x["fit"].U_s_inf if x["fit"] else None for x in r])
        gam, gam_sd = _mean_sd([x["gamma"] for x in r])
        pred, _ = _mean_sd(predicted.get(s, []))
        rows.append({"strategy": s, "seeds": seeds, "failed_seeds": failed,
                     "initial_acc": ini, "initial_acc_sd": ini_sd, "final_acc": fin, "final_acc_sd": fin_sd,
                     "U_s_inf": lim, "U_s_inf_sd": lim_sd, "gamma": gam, "gamma_sd": gam_sd,
                     "predicted_U_s_T": pred, "eta": [round(e, 4) for e in r[0]["eta"]] if r else None})
    none_final = next((x["final_acc"] for x in rows if x["strategy"] == "none"), None)
    for x in rows:
        x["gain_over_none"] = (None if none_final is None or x["final_acc"] is None or x["strategy"] == "none"
                               else x["final_acc"] - none_final)
    observed = [x["strategy"] for x in sorted((x for x in rows if x["final_acc"] is not None),
                                              key=lambda x: -x["final_acc"])]
    pred_order = [x["strategy"] for x in sorted((x for x in rows if x["predicted_U_s_T"] is not None),
                                                key=lambda x: x["predicted_U_s_T"])]
    for x in rows:
        x["observed_rank"] = observed.index(x["strategy"]) + 1 if x["strategy"] in observed else None
        x["predicted_rank"] = pred_order.index(x["strategy"]) + 1 if x["strategy"] in pred_order else None
    ext = [x for x in rows if x["strategy"] != "none" and x["final_acc"] is not None]
    summary = {
        "budget": base.external.budget, "rounds": base.rounds, "quantity": quantity, "gamma_pooled": gamma,
        "observed_order": observed, "predicted_order": pred_order,
        "external_spread": (max(x["final_acc"] for x in ext) - min(x["final_acc"] for x in ext)) if ext else None,
        "external_mean_gain": (statistics.fmean(x["gain_over_none"] for x in ext)
                               if ext and none_final is not None else None),
        "all_external_beat_none": (all(x["gain_over_none"] > 0 for x in ext) if ext and none_final is not None
                                   else None),
        "notes": notes,
    }
    return {"rows": rows, "summary": summary}


def _f(x, fmt=".3f") -> str:
    return "-" if x is None else format(x, fmt)


def _pm(m, sd, fmt=".3f") -> str:
    return "-" if m is None else f"{m:{fmt}} ± {sd:{fmt}}"


HEADER = ["strategy", "seeds", "initial held-out acc", "final held-out acc", "gain over none", "fitted U_s,inf",
          "fitted gamma", "predicted U_s(T)", "predicted rank", "observed rank"]


def table_rows(table: dict) -> list[list[str]]:
    out = []
    for x in table["rows"]:
        seeds = ",".join(map(str, x["seeds"])) + (f" (failed: {x['failed_seeds']})" if x["failed_seeds"] else "")
        gain = "-" if x["gain_over_none"] is None else f"{x['gain_over_none']:+.3f}"
        out.append([x["strategy"], seeds, _pm(x["initial_acc"], x["initial_acc_sd"]),
                    _pm(x["final_acc"], x["final_acc_sd"]), gain, _pm(x["U_s_inf"], x["U_s_inf_sd"], ".4f"),
                    _pm(x["gamma"], x["gamma_sd"], ".3g"), _f(x["predicted_U_s_T"], ".4f"),
                    _f(x["predicted_rank"], "d"), _f(x["observed_rank"], "d")])
    return out


def summary_lines(table: dict) -> list[str]:
    s = table["summary"]
    lines = [f"budget M = {s['budget']} external examples over {s['rounds']} training rounds; "
             f"uncertainty: {s['quantity']} NLL; ± is the s.d. over seeds",
             f"observed order (final held-out acc, best first): {' > '.join(s['observed_order']) or '-'}",
             f"predicted order (theory: U_s at round {s['rounds']}, lowest first; pooled gamma "
             f"{_f(s['gamma_pooled'], '.3g')}): {' > '.join(s['predicted_order']) or '-'}"]
    if s["external_spread"] is not None:
        gain = "-" if s["external_mean_gain"] is None else f"{s['external_mean_gain']:+.3f}"
        lines.append(f"spread between external strategies: {s['external_spread']:.3f} "
                     f"(final held-out acc, max - min of seed means) vs their mean gain over none: {gain}"
                     + ("" if s["all_external_beat_none"] is None else
                        f"; every external strategy beats none: {'yes' if s['all_external_beat_none'] else 'no'}"))
    lines += [f"note: {n}" for n in s["notes"]]
    return lines


def to_markdown(table: dict) -> str:
    rows = table_rows(table)
    out = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out + [""] + summary_lines(table)) + "\n"


def to_csv(table: dict) -> str:
    keys = ["strategy", "seeds", "initial_acc", "initial_acc_sd", "final_acc", "final_acc_sd", "gain_over_none",
            "U_s_inf", "U_s_inf_sd", "gamma", "gamma_sd", "predicted_U_s_T", "predicted_rank", "observed_rank"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(keys)
    for x in table["rows"]:
        w.writerow([" ".join(map(str, x[k])) if k == "seeds" else ("" if x[k] is None else x[k]) for k in keys])
    return buf.getvalue()


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
            self.progress(msg)

    def _preflight(self) -> tuple[bool, int]:
        import ray

        import workloads
        from orchestrator import ray_session, tracking

        workload = workloads.get(self.base.workload.name, self.base.workload.options)
        check_schedulers(self.variants, workload)
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
            first = (str(e).strip().splitlines() or [""])[0]
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
            logger = tracking.RunLogger(self.uri, self.experiment_name,
                                        b.tracking.run_name or f"allocate M={b.external.budget}", params,
                                        tags={"svgap.kind": "allocation_study"})
            logger.log_text(config_mod.dump(b), "config.yaml")
            self._say(f"allocation study: {len(self.variants)} experiments ({', '.join(self.strategies)} x "
                      f"{self.seeds} seed(s)), budget {b.external.budget}, {slots} at a time; parent MLflow run "
                      f"{logger.run_id} ({self.uri})")
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
            files = {"allocation_table.json": json.dumps(table, indent=1),
                     "allocation_table.md": to_markdown(table), "allocation_table.csv": to_csv(table)}
            for name, text in files.items():
                (out_dir / name).write_text(text)
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
        except KeyboardInterrupt:
            if logger:
                logger.end("KILLED")
            raise
        except BaseException:
            if logger:
                logger.end("FAILED")
            raise
        finally:
            ray_session.shutdown(started)
