"""One round t of docs/theory.md §1 with the current model π_t: generate, verify, select, measure, then train.

`measure` computes every number of round t with π_t (before training) -- that is the round's record -- and
`train` turns the BoN picks (plus any external examples) into π_{t+1}. Stages talk to pools with plain data.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from orchestrator.engines.base import Sample
from orchestrator.trainers.base import TrainingExample, TrainingStats
from orchestrator.run.metrics import verifier_quality
from orchestrator.config import ExperimentConfig
from orchestrator.errors import SvgapError
from orchestrator.roles.group import ActorGroup
from orchestrator.run.selection import best_of_n
from orchestrator.store.records import PickRow, RoundRecord
from orchestrator.engines.weights import WeightsUpdate
from workloads.base import Problem

log = logging.getLogger(__name__)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from (experiment seed, round, kind, problem id): independent of sharding and batching."""
    h = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


@dataclass
class Pools:
    generation: ActorGroup
    verification: ActorGroup
    training: ActorGroup

    def faults(self) -> dict[str, int]:
        """Lost actors survived so far, all pools together (roles/calls.py): calls sent again, actors replaced."""
        groups = (self.generation, self.verification, self.training)
        return {"retried_shards": sum(g.faults.retried for g in groups),
                "replaced_actors": sum(g.faults.replaced for g in groups)}

    def peak_memory_mb(self) -> dict[str, float]:
        """Peak resident memory of each pool's largest actor so far (MiB): what a role needs per actor."""
        return {f"mem/{g.spec.role}_peak_mb": max(g.call_all("memory", "peak_rss_mb"))
                for g in (self.generation, self.verification, self.training)}

    def faults_since(self, before: dict[str, int]) -> dict[str, int]:
        """What one round survived: the counts a round record carries."""
        return {k: v - before.get(k, 0) for k, v in self.faults().items()}


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


class RoundRunner:
    """Runs the stages of a round on the pools; knows the stage order, not MLflow."""

    def __init__(self, cfg: ExperimentConfig, workload, pools: Pools, heldout: list[Problem]) -> None:
        self.cfg, self.workload, self.pools, self.heldout = cfg, workload, pools, heldout

    def _sample_refs(self, problems: list[Problem], t: int, kind: str, n: int, version: int) -> list:
        g = self.cfg.generation
        items = [(p.prompt, derive_seed(self.cfg.seed, t, kind, p.id)) for p in problems]
        return self.pools.generation.submit_shards("sample", items, version, n, g.temperature, g.max_new_tokens,
                                                   g.batch_size)

    def problems(self, t: int) -> list[Problem]:
        return self.workload.problems("train", self.cfg.workload.train_prompts, derive_seed(self.cfg.seed, t, "prompts"))

    def _verify(self, problems: list[Problem], samples: list[list[Sample]],
                version: int) -> tuple[list[float], list[float] | None]:
        """Every candidate's score s and (scored) its teacher-forced U, in candidate order.

        One call per actor: its engine scores the queries and (scored) measures U in one pass. Every inference
        actor holds π_t, so the generation actors take a share once their held-out samples are drawn (their tasks
        run in order): one verification actor alone left the generation pool's CPUs idle most of the round."""
        cfg, vc = self.cfg, self.cfg.verification
        make = self.workload.tf_query if vc.method == "tf" else self.workload.qe_query
        items = [(make(p, s.text), p.prompt, s.token_ids) for p, row in zip(problems, samples) for s in row]
        ver, gen = self.pools.verification, self.pools.generation
        # the held-out samples the generation actors draw first count as work, so that both pools end together
        # (SmolLM2, 1 thread: a held-out sample of 12 tokens costs ~0.3 of a scored verification, ~0.6 unscored)
        heldout_work = len(self.heldout) * cfg.workload.heldout_samples * (0.3 if vc.uncertainty == "scored" else 0.6)
        cut = min(len(items), round((len(items) + heldout_work) * len(ver) / (len(ver) + len(gen))))
        args = (version, vc.method, vc.uncertainty == "scored", vc.batch_size)
        ver_refs = ver.submit_shards("verify", items[:cut], *args)
        gen_refs = gen.submit_shards("verify", items[cut:], *args)
        verified = ver.gather("verify", ver_refs) + gen.gather("verify", gen_refs)
        return [s for s, _ in verified], ([u for _, u in verified] if vc.uncertainty == "scored" else None)

    def measure(self, t: int, version: int) -> tuple[RoundRecord, list[PickRow], list[list[int]]]:
        """Round t's record with π_t: uncertainties, scores, BoN picks (rows + their sampled token ids),
        accuracies, held-out accuracy."""
        cfg, wl = self.cfg, self.workload
        problems = self.problems(t)
        n = cfg.generation.n
        timings: dict[str, float] = {}

        t0 = time.perf_counter()
        samples: list[list[Sample]] = self.pools.generation.gather(
            "generate", self._sample_refs(problems, t, "train", n, version))
        timings["generate"] = time.perf_counter() - t0
        gen_tokens = sum(s.length for row in samples for s in row)
        log.info(f"round {t}: generated {len(problems)}x{n} candidates in {timings['generate']:.1f}s")

        # The held-out measurement runs on the generation pool while the verification pool scores.
        t1 = time.perf_counter()
        heldout_refs = self._sample_refs(self.heldout, t, "heldout", cfg.workload.heldout_samples, version)
        flat_scores, flat_u = self._verify(problems, samples, version)
        timings["verify"] = time.perf_counter() - t1
        log.info(f"round {t}: verified {len(flat_scores)} candidates in {timings['verify']:.1f}s")
        t_wait = time.perf_counter()
        heldout = self.pools.generation.gather("heldout", heldout_refs)
        # held-out sampling overlaps verification: what it adds to the round is the wait after verify is done
        timings["heldout_wait"] = time.perf_counter() - t_wait

        t2 = time.perf_counter()
        picks: list[PickRow] = []
        pick_ids: list[list[int]] = []
        nll_all, ptok_all, len_all, correct_all, pass_any, sampled_all = [], [], [], [], [], []
        fallbacks = 0
        capped_picks: list[bool] = []  # picks cut by max_new_tokens: training on them teaches cut-off answers
        for i, (p, row) in enumerate(zip(problems, samples)):
            scores = flat_scores[i * n:(i + 1) * n]
            sampled_all += [s.nll for s in row]
            nll = flat_u[i * n:(i + 1) * n] if flat_u is not None else [s.nll for s in row]
            lens = [s.length for s in row]
            correct = [wl.check(p, s.text) for s in row]
            pick = best_of_n(scores, nll, lens, cfg.verification.threshold)
            fallbacks += pick.fallback
            k = pick.index
            nll_all += nll
            ptok_all += [a / max(b, 1) for a, b in zip(nll, lens)]
            len_all += lens
            correct_all += correct
            pass_any.append(any(correct))
            pick_ids.append(list(row[k].token_ids))
            capped_picks.append(not row[k].finished)
            picks.append(PickRow(t, p.id, p.prompt, row[k].text, False, correct[k], float(scores[k]), nll[k],
                                 lens[k], pick.fallback, sum(s >= cfg.verification.threshold for s in scores)))
        timings["select"] = time.perf_counter() - t2

        heldout_correct = [sum(wl.check(p, s.text) for s in row) for p, row in zip(self.heldout, heldout)]
        U_s, U_v = _mean(nll_all), _mean([r.nll for r in picks])
        U_s_tok = _mean(ptok_all)
        U_v_tok = _mean([r.nll / max(r.length, 1) for r in picks])
        metrics = {
            "U_s": U_s, "U_v": U_v, "G": U_s - U_v,
            "U_s_per_token": U_s_tok, "U_v_per_token": U_v_tok, "G_per_token": U_s_tok - U_v_tok,
            "len_s": _mean(len_all), "len_v": _mean([r.length for r in picks]),
            "acc_s": _mean(correct_all), "acc_v": _mean([bool(r.correct) for r in picks]),
            "pass_at_n": _mean(pass_any),
            "heldout_acc": _mean([c / len(row) for c, row in zip(heldout_correct, heldout)]),
            "capped_share": _mean([not s.finished for row in samples for s in row]),
            "capped_share_v": _mean(capped_picks),
            "fallback_rate": fallbacks / max(len(problems), 1),
            "tokens_per_s": gen_tokens / max(timings["generate"], 1e-9),
            "U_s_sampled": _mean(sampled_all),  # the generation engine's own U_s: equal to U_s unless engines differ
        }
        # verifier quality: share passing σ, and its ROC-AUC where the workload checks answers (base_eval.py)
        metrics.update(verifier_quality(flat_scores, correct_all, cfg.verification.threshold,
                                        getattr(wl, "checks_answers", True)))
        counts = {"prompts": len(problems), "candidates": len(nll_all), "fallbacks": fallbacks,
                  "heldout_prompts": len(self.heldout)}
        return RoundRecord(t, version, metrics, timings, counts, heldout=heldout_correct), picks, pick_ids

    def train(self, t: int, picks: list[PickRow], pick_ids: list[list[int]],
              external: list[Problem]) -> tuple[TrainingStats, WeightsUpdate, list[PickRow]]:
        """Fine-tune on the BoN picks (their sampled tokens) plus round t's external examples (`answer` = the
        stronger source's response text); returns π_{t+1} (adapter or full weights) and the external rows for the
        JSONL. Every training rank gets the whole list (one object-store copy) and takes its share of each batch."""
        import ray

        examples = [TrainingExample(r.prompt, response_ids=ids) for r, ids in zip(picks, pick_ids)]
        ext_rows = [PickRow(t, p.id, p.prompt, p.answer, True) for p in external]
        examples += [TrainingExample(r.prompt, response_text=r.response, external=True) for r in ext_rows]
        t0 = time.perf_counter()
        stats, update = self.pools.training.call_all("train", "train", ray.put(examples), t)[0]  # rank 0's
        if update is None:
            raise SvgapError(f"round {t}: training rank 0 returned no update")
        # a training rank lost in a later round is replaced and re-trains from here (π_{t+1}), not from π_0
        self.pools.training.remember("restore_update", update)
        log.info(f"round {t}: trained on {len(examples)} examples ({len(ext_rows)} external) "
                 f"in {time.perf_counter() - t0:.1f}s, loss {stats.loss_first:.3f} -> {stats.loss_last:.3f}")
        return stats, update, ext_rows
