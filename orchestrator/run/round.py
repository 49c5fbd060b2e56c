"""One round t of docs/theory.md §1, end to end: generate, verify, pick best-of-N, measure, train, publish.

`RoundRunner.run` measures every number of round t with π_t (before training), asks the controller what to do
(`decide`: the online fit may stop the run; the scheduler adds external examples), then trains on the BoN picks and
publishes π_{t+1} to the inference pools. It returns a frozen RoundResult; the controller only persists it. New
weights travel as object-store references: the driver never holds them. Stages talk to pools through their facades
(roles/facades.py) with plain data.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from orchestrator.engines.base import Sample
from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from orchestrator.roles.pools import Pools
from orchestrator.run.metrics import mean, pick_metrics, solver_metrics, verifier_quality
from orchestrator.run.selection import BoNPick, best_of_n
from orchestrator.store.records import PickRow, RoundRecord
from orchestrator.trainers.base import TrainingExample
from workloads.base import Problem

log = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from (experiment seed, round, kind, problem id): independent of sharding and batching."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Decision:
    """The controller's word once round t is measured: train π_{t+1} (on the picks plus `external` examples) or
    stop here; `metrics` of its own (the scheduler's external/*) join the round's record."""
    train: bool
    external: tuple[Problem, ...] = ()
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RoundResult:
    """What a round leaves: its record, the rows of its picks JSONL, and (when it trained) the reference to
    π_{t+1}'s update in the object store and the version the pools now hold."""
    record: RoundRecord
    rows: tuple[PickRow, ...]
    version: int
    update: Any = None


@dataclass(frozen=True)
class Measured:
    """Round t's candidates after verification and selection: what the record and training are made of."""
    problems: list[Problem]
    samples: list[list[Sample]]
    scores: list[float]
    nll: list[list[float]]  # U(y|x) of each candidate (teacher-forced when scored, else the sampled one)
    correct: list[list[bool]]
    picks: list[BoNPick]
    heldout: list[list[Sample]]
    timings: dict[str, float]
    scored_by: dict[str, int]  # candidates each pool scored


def distinct_items(problems: list[Problem], samples: list[list[Sample]], make) -> tuple[list[tuple], list[int]]:
    """(query, prompt, response ids) once per distinct candidate of a problem, and of[k] = the item candidate k's
    numbers come from: identical candidates (same tokens) make the same query and the same U, so each is verified
    once and its numbers shared (a row's numbers do not depend on its batch: nothing changes but the work)."""
    first: dict[tuple, int] = {}
    items: list[tuple] = []
    of: list[int] = []
    for i, (p, row) in enumerate(zip(problems, samples)):
        for s in row:
            key = (i, tuple(s.token_ids))
            if key not in first:
                first[key] = len(items)
                items.append((make(p, s.text), p.prompt, s.token_ids))
            of.append(first[key])
    return items, of


def _per_candidate(by: dict[str, int], of: list[int]) -> dict[str, int]:
    """Candidates each pool scored, from the distinct ones it ran (`by`, in the order the pools' results came)."""
    role_of = [role for role, k in by.items() for _ in range(k)]
    out = dict.fromkeys(by, 0)
    for j in of:
        out[role_of[j]] += 1
    return out


class RoundRunner:
    """Runs the stages of a round on the pools; knows the stage order, not MLflow nor the run folder."""

    def __init__(self, cfg: ExperimentConfig, workload, pools: Pools, heldout: list[Problem]) -> None:
        self.cfg, self.workload, self.pools, self.heldout = cfg, workload, pools, heldout

    def problems(self, t: int) -> list[Problem]:
        return self.workload.problems("train", self.cfg.workload.train_prompts, derive_seed(self.cfg.seed, t, "prompts"))

    def run(self, t: int, version: int, decide: Callable[[RoundRecord], Decision]) -> RoundResult:
        """Round t with π_version, end to end; `decide` sees the measured record before any training."""
        t_round = time.perf_counter()
        faults0 = self.pools.faults()  # lost actors replaced in this round: its record says how many
        m = self.measure(t, version)
        record, rows = self.record(t, version, m), self.pick_rows(t, m)
        decision = decide(record)
        train: dict[str, float] = {}
        timings, counts, update = dict(record.timings), dict(record.counts), None
        if decision.train:
            train, synced, update, ext_rows = self.train(t, m, list(decision.external))
            version = synced["version"]
            timings.update(train=synced["train"], sync=synced["sync"])
            rows += ext_rows
            counts["external"] = len(ext_rows)
        metrics = {**record.metrics, **decision.metrics, **self.pools.peak_memory_mb()}
        timings["round"] = time.perf_counter() - t_round
        counts.update(self.pools.faults_since(faults0))
        record = replace(record, metrics=metrics, timings=timings, counts=counts, train=train)
        return RoundResult(record, tuple(rows), version, update)

    # ---- measuring π_t ----
    def _sample(self, problems: list[Problem], t: int, kind: str, n: int, version: int) -> list:
        g = self.cfg.generation
        items = [(p.prompt, derive_seed(self.cfg.seed, t, kind, p.id)) for p in problems]
        return self.pools.solver.submit_sample(items, version, n, g.temperature, g.max_new_tokens, g.batch_size)

    def _verify(self, problems: list[Problem], samples: list[list[Sample]],
                version: int) -> tuple[list[float], list[float] | None, dict[str, int]]:
        """Every candidate's score s and (scored) its teacher-forced U, in candidate order, and how many candidates
        each pool scored. The policy verifies itself, or a judge pool (its own model) scores while the policy's
        pools measure U."""
        vc = self.cfg.verification
        make = self.workload.tf_query if vc.method == "tf" else self.workload.qe_query
        items, of = distinct_items(problems, samples, make)
        scored = vc.uncertainty == "scored" and not self.sampled_is_scored()
        judge = self.pools.judge
        if judge is None:
            pairs, by = self._split("verify", items, version, (vc.method, scored, vc.batch_size))
            return [pairs[j][0] for j in of], ([pairs[j][1] for j in of] if scored else None), _per_candidate(by, of)
        calls = judge.submit_verify(items, version, vc.method, False, vc.batch_size)
        us, _ = self._split("uncertainty", [(p, ids) for _, p, ids in items], version, (vc.batch_size,)) \
            if scored else (None, {})
        scores = judge.gather("verify", calls)
        return [scores[j][0] for j in of], ([us[j] for j in of] if us is not None else None), {judge.role: len(of)}

    def sampled_is_scored(self) -> bool:
        """Whether the generation logprobs already are the teacher-forced U: the HF engine in float32 computes both
        with the same model forward (to 1e-4, tests/engines/test_hf_shared.py), so no second pass is run for them.
        Another engine or precision keeps the pass that makes U independent of the sampler's kernels."""
        return self.cfg.model.engine == "hf" and self.cfg.model.dtype == "float32"

    def _split(self, stage: str, items: list, version: int, args: tuple) -> tuple[list, dict[str, int]]:
        """`stage` (verify or uncertainty) over the verification and generation pools, both holding π_t.

        The generation actors take a share once their held-out samples are drawn (their tasks run in order): one
        verification actor alone left the generation pool's CPUs idle most of the round. The held-out samples they
        draw first count as work, so that both pools end together (SmolLM2, 1 thread: a held-out sample of 12
        tokens costs ~0.3 of a scored verification, ~0.6 unscored)."""
        cfg = self.cfg
        ver, gen = self.pools.verifier, self.pools.solver
        weight = 0.3 if cfg.verification.uncertainty == "scored" and not self.sampled_is_scored() else 0.6
        heldout_work = len(self.heldout) * cfg.workload.heldout_samples * weight
        cut = min(len(items), round((len(items) + heldout_work) * len(ver) / (len(ver) + len(gen))))
        submit = (lambda pool, part: pool.submit_verify(part, version, *args)) if stage == "verify" else \
            (lambda pool, part: pool.submit_uncertainty(part, version, *args))
        if ver.group is gen.group:  # resources.colocate_verification: one pool does it all
            return gen.gather(stage, submit(gen, items)), {gen.role: len(items)}
        ver_calls, gen_calls = submit(ver, items[:cut]), submit(gen, items[cut:])
        done = ver.gather(stage, ver_calls) + gen.gather(stage, gen_calls)
        return done, {ver.role: cut, gen.role: len(items) - cut}

    def measure(self, t: int, version: int) -> Measured:
        """Generate N candidates per prompt, verify them (held-out sampling runs meanwhile), pick best-of-N."""
        cfg, wl, n = self.cfg, self.workload, self.cfg.generation.n
        problems = self.problems(t)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        samples: list[list[Sample]] = self.pools.solver.gather("generate", self._sample(problems, t, "train", n,
                                                                                         version))
        timings["generate"] = time.perf_counter() - t0
        log.info(f"round {t}: generated {len(problems)}x{n} candidates in {timings['generate']:.1f}s")
        # The held-out measurement runs on the generation pool while the verification pool scores.
        t1 = time.perf_counter()
        heldout_refs = self._sample(self.heldout, t, "heldout", cfg.workload.heldout_samples, version)
        scores, flat_u, scored_by = self._verify(problems, samples, version)
        timings["verify"] = time.perf_counter() - t1
        log.info(f"round {t}: verified {len(scores)} candidates in {timings['verify']:.1f}s")
        t_wait = time.perf_counter()
        heldout = self.pools.solver.gather("heldout", heldout_refs)
        # held-out sampling overlaps verification: what it adds to the round is the wait after verify is done
        timings["heldout_wait"] = time.perf_counter() - t_wait
        t2 = time.perf_counter()
        nll = [flat_u[i * n:(i + 1) * n] if flat_u is not None else [s.nll for s in row]
               for i, row in enumerate(samples)]
        correct = [[wl.check(p, s.text) for s in row] for p, row in zip(problems, samples)]
        picks = [best_of_n(scores[i * n:(i + 1) * n], nll[i], [s.length for s in row], cfg.verification.threshold)
                 for i, row in enumerate(samples)]
        timings["select"] = time.perf_counter() - t2
        return Measured(problems, samples, scores, nll, correct, picks, heldout, timings, scored_by)

    def record(self, t: int, version: int, m: Measured) -> RoundRecord:
        """Round t's record with π_t: uncertainties, accuracies, the gap, verifier quality, held-out accuracy."""
        cfg, wl = self.cfg, self.workload
        lengths = [[s.length for s in row] for row in m.samples]
        capped = [[not s.finished for s in row] for row in m.samples]
        metrics = {**solver_metrics(m.nll, lengths, m.correct, capped),
                   **pick_metrics(m.nll, lengths, m.correct, capped, m.picks)}
        metrics["G"] = metrics["U_s"] - metrics["U_v"]
        metrics["G_per_token"] = metrics["U_s_per_token"] - metrics["U_v_per_token"]
        heldout_correct = [sum(wl.check(p, s.text) for s in row) for p, row in zip(self.heldout, m.heldout)]
        metrics["heldout_acc"] = mean([c / len(row) for c, row in zip(heldout_correct, m.heldout)])
        gen_tokens = sum(sum(row) for row in lengths)
        metrics["tokens_per_s"] = gen_tokens / max(m.timings["generate"], 1e-9)
        # the generation engine's own U_s: equal to U_s unless the engines differ
        metrics["U_s_sampled"] = mean([s.nll for row in m.samples for s in row])
        # verifier quality: share passing σ, and its ROC-AUC where the workload checks answers
        metrics.update(verifier_quality(m.scores, [c for row in m.correct for c in row], cfg.verification.threshold,
                                        getattr(wl, "checks_answers", True)))
        counts = {"prompts": len(m.problems), "candidates": sum(len(row) for row in m.samples),
                  "fallbacks": sum(p.fallback for p in m.picks), "heldout_prompts": len(self.heldout),
                  **{f"scored/{role}": k for role, k in m.scored_by.items()}}
        return RoundRecord(t, version, metrics, dict(m.timings), counts, heldout=heldout_correct)

    def pick_rows(self, t: int, m: Measured) -> list[PickRow]:
        """One JSONL row per prompt: its BoN pick and why (score, U, how many candidates passed σ)."""
        n, sigma = self.cfg.generation.n, self.cfg.verification.threshold
        rows = []
        for i, (p, row, pick) in enumerate(zip(m.problems, m.samples, m.picks)):
            k, scores = pick.index, m.scores[i * n:(i + 1) * n]
            rows.append(PickRow(t, p.id, p.prompt, row[k].text, False, m.correct[i][k], float(scores[k]),
                                m.nll[i][k], row[k].length, pick.fallback, sum(s >= sigma for s in scores)))
        return rows

    # ---- π_{t+1} ----
    def train(self, t: int, m: Measured, external: list[Problem]) -> tuple[dict, dict, Any, list[PickRow]]:
        """Fine-tune on the BoN picks (their sampled tokens) plus round t's external examples (`answer` = the
        stronger source's response text), then publish π_{t+1} to the inference pools. Every training rank gets the
        whole list (one object-store copy) and takes its share of each batch. Returns the train stats, the version
        and stage times, the update's reference and the external rows for the JSONL."""
        import ray

        examples = [TrainingExample(p.prompt, response_ids=list(row[k.index].token_ids))
                    for p, row, k in zip(m.problems, m.samples, m.picks)]
        ext_rows = [PickRow(t, p.id, p.prompt, p.answer, True) for p in external]
        examples += [TrainingExample(r.prompt, response_text=r.response, external=True) for r in ext_rows]
        stats, meta, update = self.pools.trainer.train(ray.put(examples), t)  # rank 0's
        if meta is None:
            raise SvgapError(f"round {t}: training rank 0 returned no update")
        new_version, nbytes = meta
        self.pools.trainer.remember(update)
        log.info(f"round {t}: trained on {len(examples)} examples ({len(ext_rows)} external) in "
                 f"{stats.seconds:.1f}s, loss {stats.loss_first:.3f} -> {stats.loss_last:.3f}")
        t_sync = time.perf_counter()
        self.pools.publish(update, new_version)
        synced = {"version": new_version, "train": stats.seconds, "sync": time.perf_counter() - t_sync}
        train = {"loss_first": stats.loss_first, "loss_last": stats.loss_last, "examples": stats.examples,
                 "external": stats.external, "tokens": stats.tokens,
                 "tokens_forwarded": stats.forwarded, "sync_bytes": nbytes}
        return train, synced, update, ext_rows
