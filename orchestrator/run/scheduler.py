"""External-data scheduler (docs/theory.md §5): spends a budget of M external examples over the training rounds.

Round t = 0..T-1 gets exactly counts[t] examples, counts[t] = η_t·M rounded by largest remainder so that the
counts sum to M exactly; each example is used once (round t takes the next counts[t] of one fixed, seeded draw).

Strategies (`external.strategy`):
    none      nothing
    early / uniform / late   theory.allocation.strategy_shares over the T training rounds
    explicit  `external.shares` (one per training round, sum 1)
    planned   warm-up: rounds t < w (w = `external.warmup_rounds`) get nothing. After round w is measured the gap
              dynamics are fitted on rounds 0..w (needs w + 1 >= 4 measured rounds, i.e. w >= 3), every allocation
              of the whole budget over the remaining rounds w..T-1 (early / uniform / late over those rounds) is
              simulated with theory.allocation.plan, exactly as `svgap plan --fit FIT --gamma γ --rounds T-w
              --start-round w --objective OBJ` would (the fit's bootstrap replicates propagated into a 95 % interval
              per strategy), and the best by `external.objective` is used -- unless it cannot be told apart from
              the runner-up under the fit (theory/intervals.py: the interval of their difference includes 0); then
              `uniform`, the least committal allocation, is used and plan.json says why. `external.gamma`
              is required: the warm-up rounds use no external data, so nothing in the run can estimate γ yet (fit it
              from an earlier run with `svgap plan --run RUN_ID` / `svgap allocate`). If the warm-up fit has no
              decaying model the budget goes uniformly over the remaining rounds, and plan.json says why.

Sources (`external.source`):
    workload  M distinct problems of the workload's external split (seeded by the experiment seed), with
              `workload.reference(problem)` as the response: that split is disjoint from the train split every
              round's prompts come from and from the held-out set, so external data never repeats a round's prompt
    PATH      a JSONL file of {"prompt": ..., "response": ...} (optional "id"); its lines are shuffled by the
              experiment seed and the first M are used

Every problem is checked in `build_scheduler` (preflight, before Ray starts): one-line SvgapError naming it.
Metrics of training round t: external/eta (count_t / M, the realised share), external/count, external/used_total.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from workloads.base import Problem

log = logging.getLogger(__name__)

NAMED = ("early", "uniform", "late")


# ---- arithmetic -----------------------------------------------------------------------------------------------------
def round_counts(shares: list[float], budget: int) -> list[int]:
    """Largest-remainder rounding of η_t·M: non-negative integers summing to exactly M (ties go to the earlier
    round), each within 1 of η_t·M."""
    if budget < 0:
        raise SvgapError(f"external.budget must be >= 0, got {budget}")
    if not shares:
        return []
    total = float(sum(shares))
    if budget == 0 or total <= 0:
        return [0] * len(shares)
    exact = [budget * s / total for s in shares]
    counts = [int(math.floor(x + 1e-9)) for x in exact]
    left = budget - sum(counts)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def strategy_shares(strategy: str, rounds: int, shares: list[float] | None = None) -> list[float]:
    """η_0..η_{rounds-1} of a fixed strategy (planned is decided during the run)."""
    if strategy == "none":
        return [0.0] * rounds
    if strategy == "explicit":
        if shares is None or len(shares) != rounds:
            raise SvgapError(f"external.shares: need one share per training round ({rounds})")
        return [float(s) for s in shares]
    if strategy in NAMED:
        from orchestrator.theory.allocation import strategy_shares as named

        return named(strategy, rounds)
    raise SvgapError(f"external.strategy: {strategy!r} has no fixed shares")


# ---- sources --------------------------------------------------------------------------------------------------------
def _seed(*parts: object) -> int:
    from orchestrator.run.round import derive_seed

    return derive_seed(*parts)


def _from_workload(cfg: ExperimentConfig, workload) -> list[Problem]:
    m = cfg.external.budget
    try:
        drawn = workload.problems("external", m, _seed(cfg.seed, "external"))
    except SvgapError as e:
        raise SvgapError(f"external.budget {m} is larger than the workload's external split holds ({e})") from None
    out, seen = [], set()
    for p in drawn:
        if p.id not in seen:
            seen.add(p.id)
            out.append(Problem(p.id, p.prompt, workload.reference(p)))
    if len(out) < m:
        raise SvgapError(f"external.budget {m} is larger than the workload's external split holds "
                         f"({len(out)} distinct problems)")
    return out


def read_jsonl(path: Path) -> list[Problem]:
    """Every line of a {prompt, response} JSONL file as a Problem (answer = response); blank lines are skipped."""
    if not path.is_file():
        raise SvgapError(f"external.source: file not found: {path}")
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SvgapError(f"external.source: cannot read {path}: {e}") from None
    out: list[Problem] = []
    ids: set[str] = set()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise SvgapError(f"external.source {path} line {no}: not valid JSON") from None
        if not isinstance(row, dict):
            raise SvgapError(f"external.source {path} line {no}: expected an object with prompt and response")
        missing = [k for k in ("prompt", "response") if not isinstance(row.get(k), str) or not row.get(k)]
        if missing:
            raise SvgapError(f"external.source {path} line {no}: missing or non-string field(s) "
                             f"{', '.join(missing)}")
        pid = str(row.get("id", f"ext-{no}"))
        if pid in ids:
            raise SvgapError(f"external.source {path} line {no}: duplicate id {pid!r}")
        ids.add(pid)
        out.append(Problem(pid, row["prompt"], row["response"]))
    return out


def _from_file(cfg: ExperimentConfig) -> list[Problem]:
    path = Path(cfg.external.source).expanduser()
    rows = read_jsonl(path)
    m = cfg.external.budget
    if m > len(rows):
        raise SvgapError(f"external.budget {m} is larger than external.source {path} holds ({len(rows)} examples)")
    order = np.random.default_rng(_seed(cfg.seed, "external-file") & 0xFFFFFFFF).permutation(len(rows))
    return [rows[i] for i in order[:m]]


# ---- the scheduler --------------------------------------------------------------------------------------------------
class Scheduler:
    """Hands round t its external examples; the controller calls attach, then examples(t) and metrics(t) per
    training round."""

    def __init__(self, cfg: ExperimentConfig, pool: list[Problem]) -> None:
        self.cfg = cfg
        self.ext = cfg.external
        self.rounds = cfg.rounds
        self.budget = self.ext.budget if self.ext.strategy != "none" else 0
        self.pool = pool
        self.counts: list[int] | None = None  # known up front, except planned (after the warm-up)
        if self.ext.strategy != "planned":
            self.counts = round_counts(strategy_shares(self.ext.strategy, self.rounds, self.ext.shares), self.budget)
        self.given: dict[int, int] = {}
        self.used = 0
        self.plan: dict | None = None
        self.logger = None
        self.run_dir: Path | None = None

    def attach(self, logger, run_dir: Path) -> None:
        self.logger, self.run_dir = logger, Path(run_dir)
        desc = {"strategy": self.ext.strategy, "budget": self.budget, "rounds": self.rounds,
                "source": self.ext.source, "counts": self.counts}
        if self.ext.strategy == "planned":
            desc.update(warmup_rounds=self.ext.warmup_rounds, gamma=self.ext.gamma, objective=self.ext.objective)
        self._save(desc, "allocation.json")
        what = (f"planned after round {self.ext.warmup_rounds} (objective {self.ext.objective}, "
                f"gamma {self.ext.gamma:g})" if self.counts is None else f"counts per round {self.counts}")
        log.info(f"external data: {self.budget} examples ({self.ext.strategy}, source {self.ext.source}); {what}")

    def _save(self, data: dict, name: str) -> None:
        if self.run_dir is not None:
            folder = self.run_dir / "external"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(json.dumps(data, indent=1))
        if self.logger is not None:
            self.logger.log_dict(data, f"external/{name}")

    def examples(self, t: int, records: list) -> list[Problem]:
        """Round t's external examples (records: the round records 0..t, used by `planned` to fit)."""
        if not 0 <= t < self.rounds:
            raise SvgapError(f"external data asked for round {t}; training rounds are 0..{self.rounds - 1}")
        if t in self.given:
            raise SvgapError(f"external data for round {t} was already handed out")
        if self.counts is None:
            if t < self.ext.warmup_rounds:
                n = 0
            else:
                self._make_plan(t, records)
                n = self.counts[t]
        else:
            n = self.counts[t]
        batch = self.pool[self.used:self.used + n]
        self.used += n
        self.given[t] = n
        return batch

    def future_eta(self, t: int) -> list[float] | None:
        """Shares of the budget for training rounds t..T-1 (None while `planned` has not planned yet)."""
        if self.counts is None or not self.budget:
            return None if self.counts is None else [0.0] * (self.rounds - t)
        return [c / self.budget for c in self.counts[t:]]

    @property
    def remaining(self) -> int:
        """External examples not handed out yet: the run must not stop early while the budget is unspent."""
        return self.budget - self.used

    def state(self) -> dict:
        """What a resume needs (state.json): the examples handed out per round, and the counts (a plan's too)."""
        return {"given": {str(t): n for t, n in self.given.items()}, "used": self.used, "counts": self.counts,
                "plan": self.plan}

    def restore(self, state: dict) -> None:
        """Back to `state()` after the rounds it covers: the next round takes the next unused examples."""
        self.given = {int(t): int(n) for t, n in state.get("given", {}).items()}
        self.used = int(state.get("used", 0))
        if state.get("counts") is not None:
            self.counts = [int(c) for c in state["counts"]]
        self.plan = state.get("plan")
        if self.used != sum(self.given.values()) or self.used > len(self.pool):
            raise SvgapError(f"external data state of the run folder is inconsistent (used {self.used}, handed out "
                             f"{sum(self.given.values())}, pool {len(self.pool)})")

    def metrics(self, t: int) -> dict[str, float]:
        n = self.given.get(t, 0)
        return {"external/eta": n / self.budget if self.budget else 0.0, "external/count": float(n),
                "external/used_total": float(sum(c for r, c in self.given.items() if r <= t))}

    # -- planned --
    def _make_plan(self, t: int, records: list) -> None:
        from orchestrator.theory.allocation import plan, strategy_shares as named
        from orchestrator.theory.fit import fit_gap
        from orchestrator.theory.intervals import propagate, samples_from_rows, widening

        w, left = t, self.rounds - t
        suffix = "" if self.cfg.fit.quantity == "total" else "_per_token"
        recs = [r for r in records if r.round <= t]
        rounds = [r.round for r in recs]
        U_s = [r.metrics["U_s" + suffix] for r in recs]
        U_v = [r.metrics["U_v" + suffix] for r in recs]
        data: dict = {"start_round": w, "rounds": left, "budget": self.budget, "gamma": self.ext.gamma,
                      "objective": self.ext.objective, "quantity": self.cfg.fit.quantity,
                      "observed": {"rounds": rounds, "U_s": U_s, "U_v": U_v}}
        try:
            fit = fit_gap(rounds, U_s, U_v, n_boot=200, seed=self.cfg.seed, quantity=self.cfg.fit.quantity,
                          backtest=False)
            data["fit"] = fit.to_json()
            if not fit.decaying:
                raise SvgapError(f"the warm-up fit has no decaying model ({fit.verdict})")
            pl = plan(fit, self.ext.gamma, left, list(NAMED), self.ext.objective, start_round=w)
            if pl.best is None:
                raise SvgapError(pl.verdict)
            propagate(pl, samples_from_rows(fit.boot, self.ext.gamma), widen=widening(fit.n_rounds))
        except SvgapError as e:
            shares = named("uniform", left)
            data.update(chosen="uniform", fallback=str(e), eta=shares)
            why = f"no plan ({e}); spending the budget uniformly over rounds {w}..{self.rounds - 1}"
        else:
            data.update(pl.to_json())
            shares = pl.shares[pl.chosen]
            data.update(chosen=pl.chosen, eta=shares,
                        equivalent_command=f"svgap plan --fit fit.json --gamma {self.ext.gamma!r} --rounds {left} "
                                           f"--start-round {w} --objective {self.ext.objective}")
            key = "U_s_inf" if self.ext.objective == "limit" else "U_s_T"
            ranked = sorted(pl.outcomes, key=lambda k: (getattr(pl.outcomes[k], key) is None,
                                                        getattr(pl.outcomes[k], key) or 0.0))
            cands = ", ".join(f"{k} {getattr(pl.outcomes[k], key):.4f}" if pl.outcomes[k].verdict is None
                              else f"{k} ({pl.outcomes[k].verdict.split(':')[0]})" for k in ranked)
            base = getattr(pl.baseline, key)
            label = "U_s,inf" if self.ext.objective == "limit" else f"U_s at round {self.rounds}"
            why = (f"plan after round {w} (fit rate {fit.rate:.3f}, U_s,inf {fit.U_s_inf:.4f}; gamma "
                   f"{self.ext.gamma:g}): predicted {label}: {cands}; no external data {base:.4f} -> {pl.chosen} "
                   f"({pl.why})")
        counts = round_counts(shares, self.budget)
        self.counts = [0] * w + counts
        data["counts"] = self.counts
        data["why"] = why
        self.plan = data
        self._save(data, "plan.json")
        log.info(f"external data: {why}; counts per round {self.counts}")


def planned_checks(cfg: ExperimentConfig) -> None:
    """`planned` needs γ, >= 4 measured rounds before its first allocation and a round left after the warm-up."""
    from orchestrator.theory.fit import MIN_ROUNDS

    ext = cfg.external
    if ext.gamma is None:
        raise SvgapError("external.gamma: required with external.strategy planned (the warm-up uses no external "
                         "data, so γ cannot be fitted in the run; fit it with `svgap plan --run` on an earlier run)")
    if ext.warmup_rounds + 1 < MIN_ROUNDS:
        raise SvgapError(f"external.warmup_rounds: {ext.warmup_rounds} warm-up rounds give "
                         f"{ext.warmup_rounds + 1} measured rounds before the plan; the fit needs {MIN_ROUNDS} "
                         f"(set warmup_rounds >= {MIN_ROUNDS - 1})")
    if ext.warmup_rounds >= cfg.rounds:
        raise SvgapError(f"external.warmup_rounds: {ext.warmup_rounds} leaves no training round for the budget "
                         f"(rounds is {cfg.rounds}; need warmup_rounds < rounds)")


def build_scheduler(cfg: ExperimentConfig, workload) -> Scheduler:
    """Check the external-data config against its source and build the scheduler (preflight: nothing runs yet)."""
    ext = cfg.external
    if ext.strategy == "none":
        return Scheduler(cfg, [])
    if ext.budget < 1:
        raise SvgapError(f"external.budget: must be >= 1 with external.strategy {ext.strategy}")
    if ext.strategy == "explicit":
        from orchestrator.theory.allocation import check_shares

        check_shares(ext.shares or [], cfg.rounds, "external.shares")
    if ext.strategy == "planned":
        planned_checks(cfg)
    pool = _from_workload(cfg, workload) if ext.source == "workload" else _from_file(cfg)
    return Scheduler(cfg, pool)
