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
    training round, and keeps what take() returns (allocation.json, plan.json). It writes nothing itself."""

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
        self.decided: list[tuple[str, dict]] = []  # files for the run store: allocation.json, plan.json

    def attach(self) -> None:
        """Start of the run: the allocation is decided (plan.json follows for `planned`); nothing is written here."""
        desc = {"strategy": self.ext.strategy, "budget": self.budget, "rounds": self.rounds,
                "source": self.ext.source, "counts": self.counts}
        if self.ext.strategy == "planned":
            desc.update(warmup_rounds=self.ext.warmup_rounds, gamma=self.ext.gamma, objective=self.ext.objective)
        self.decided.append(("allocation.json", desc))
        what = (f"planned after round {self.ext.warmup_rounds} (objective {self.ext.objective}, "
                f"gamma {self.ext.gamma:g})" if self.counts is None else f"counts per round {self.counts}")
        log.info(f"external data: {self.budget} examples ({self.ext.strategy}, source {self.ext.source}); {what}")

    def take(self) -> list[tuple[str, dict]]:
        """The decisions made since the last take, as (file name, data): the controller keeps them in the run
        folder (external/NAME) and mirrors them to MLflow (store/keep.py)."""
        out, self.decided = self.decided, []
        return out

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
                self._plan(t, records)
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

    def _plan(self, t: int, records: list) -> None:
        from orchestrator.run.external_plan import make_plan

        shares, self.plan, why = make_plan(self.cfg, self.budget, t, records)
        self.counts = self.plan["counts"] = [0] * t + round_counts(shares, self.budget)
        self.plan["why"] = why
        self.decided.append(("plan.json", self.plan))
        log.info(f"external data: {why}; counts per round {self.counts}")

    def metrics(self, t: int) -> dict[str, float]:
        n = self.given.get(t, 0)
        return {"external/eta": n / self.budget if self.budget else 0.0, "external/count": float(n),
                "external/used_total": float(sum(c for r, c in self.given.items() if r <= t))}


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
        from orchestrator.run.external_plan import planned_checks

        planned_checks(cfg)
    pool = _from_workload(cfg, workload) if ext.source == "workload" else _from_file(cfg)
    return Scheduler(cfg, pool)
