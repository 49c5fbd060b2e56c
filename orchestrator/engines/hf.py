"""transformers inference engine: batched sampling with the KV cache, teacher-forced scoring, TF and QE verifier
scores. CPU here, CUDA when present.

Randomness: candidate j of prompt i is drawn by inverse-CDF sampling from uniforms generated from (seeds[i], j)
only, so a candidate does not depend on which other prompts share its batch or its actor (engines/hf_sampling.py).
Prompts are left-padded (attention mask + explicit position ids), so rows of any lengths batch together; scoring
sorts its rows by length first so a batch pads little, and `verify` scores the TF/QE queries and the responses'
uncertainty in one pass over one list of rows.

Any local causal LM (a save_pretrained folder): prompts go through the model's chat template when it has one
(engines/chat.py, `model.chat_template`), sampling stops at any of the model's end-of-sequence ids and at the stop
strings its generation_config.json declares, and every logit -- sampled or scored -- comes from the model's own
forward, `model(...).logits` (never a decoder + head assembled here: Gemma-2's final soft-capping, Granite's or
Cohere's logit scales live in that forward). Verifier words of several tokens are read token by token, their
probability the product (engines/judge.py).
"""
from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from orchestrator.engines import judge
from orchestrator.engines.base import InferenceEngine, Sample, Scored, check_sample_args
from orchestrator.engines.chat import PromptFormat, stop_strings, stop_token_ids, word_tokens
from orchestrator.engines.device import resolve_device, torch_dtype
from orchestrator.engines.hf_prefix import SharedPrefix, TokenCount, template_prefix
from orchestrator.engines.hf_sampling import candidate_uniforms, sample_rows
from orchestrator.errors import SvgapError
from workloads.base import QEQuery, TFQuery

LOGITS_BUDGET = 1 << 27  # float32 logits one scoring forward may hold (512 MiB): real vocabularies are 100k+ wide


def _chunks(n: int, size: int):
    for lo in range(0, n, max(1, size)):
        yield lo, min(n, lo + max(1, size))


class HFBackend(InferenceEngine):
    def __init__(self, model_dir: str | Path, device: str = "auto", dtype: str = "float32", threads: int | None = None,
                 chat_template: str = "auto", system_prompt: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(int(threads))
        dtype_ = torch_dtype(dtype)
        path = Path(model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise SvgapError(f"no model at {path} (expected a save_pretrained directory with config.json)")
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype_).to(self.device).eval()
        tok = self.tokenizer
        self.stop_ids = stop_token_ids(tok, path)
        if not self.stop_ids:
            raise SvgapError(f"tokenizer at {path} has no eos token (and generation_config.json names none)")
        self.eos_id = self.stop_ids[0]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        self.stop_strings = stop_strings(path)
        self.prompts = PromptFormat.for_model(tok, path, chat_template, system_prompt)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._words: dict[tuple[str, ...], tuple[list[int], list[list[int]]]] = {}
        self._holder = None  # WeightsHolder, made on the first update (it keeps the base of adapted weights)
        self.prefix = SharedPrefix(template_prefix(self.prompts))  # the chat template's opening, run once
        self.share = True  # False: every row runs whole, no row merged (the reference path of the tests)
        self.verify_tokens = TokenCount()  # verification work so far (benchmarks/verify_tokens.py reads it)

    # -- model versions ---------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:  # type: ignore[override]
        return self._holder.version if self._holder is not None else 0

    def load_weights(self, update) -> int:
        """Merge an adapter (or load full weights) into the model in place: inference pays nothing for LoRA."""
        from orchestrator.engines.weights import WeightsHolder

        if self._holder is None:
            self._holder = WeightsHolder(self.model)
        self.prefix.reset()
        return self._holder.load(update)

    def base_fingerprint(self) -> str:
        from orchestrator.engines.weights import base_fingerprint

        if self.version != 0:
            raise SvgapError("base_fingerprint is of π_0; this engine already holds version " + str(self.version))
        return base_fingerprint(self.model)

    # -- helpers ----------------------------------------------------------------------------------------------------
    def encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def encode_many(self, texts: list[str], special: bool = True) -> list[list[int]]:
        """One tokenizer call for the distinct texts among many (per-text calls cost more than a forward pass of
        this model, and a round's verifier queries repeat: 8 candidates share a prompt, TF columns recur)."""
        if not texts:
            return []
        distinct = list(dict.fromkeys(texts))
        ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=special)["input_ids"]))
        return [list(ids[t]) for t in texts]

    def token_id(self, token: str) -> int:
        """Id of a text that must be exactly one token."""
        ids = self.encode(token, special=False)
        if len(ids) != 1:
            raise SvgapError(f"verifier token {token!r} is {len(ids)} tokens for this tokenizer, expected 1")
        return ids[0]

    def words(self, words: tuple[str, ...], what: str) -> tuple[list[int], list[list[int]]]:
        """(shared prefix ids, each word's ids after it) of verifier words (chat.word_tokens), cached."""
        if words not in self._words:
            self._words[words] = word_tokens(self.tokenizer, list(words), what)
        return self._words[words]

    def _pad_left(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        L = max(len(r) for r in rows)
        ids = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), L), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, L - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[i, L - len(r):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    def _logits_at(self, rows: Sequence[Sequence[int]], where: list[list[int]]) -> list[torch.Tensor]:
        """Float32 logits at the given (unpadded) positions of each row: list of [len(where[i]), V].

        The model's own forward computes them, asked to keep only the columns some row reads (`logits_to_keep`
        as an index tensor); rows are split when those logits would outgrow LOGITS_BUDGET."""
        L = max(len(r) for r in rows)
        cols = sorted({L - len(r) + p for r, ps in zip(rows, where) for p in ps})
        vocab = int(self.model.config.get_text_config().vocab_size)
        if len(rows) > 1 and len(rows) * len(cols) * vocab > LOGITS_BUDGET:
            half = len(rows) // 2
            return self._logits_at(rows[:half], where[:half]) + self._logits_at(rows[half:], where[half:])
        ids, mask, pos = self._pad_left(rows)
        keep = torch.tensor(cols, dtype=torch.long, device=self.device)
        kept = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
                          logits_to_keep=keep).logits
        col_of = {c: k for k, c in enumerate(cols)}
        b_idx, p_idx = [], []
        for i, (r, ps) in enumerate(zip(rows, where)):
            for p in ps:
                b_idx.append(i)
                p_idx.append(col_of[L - len(r) + p])
        logits = kept[b_idx, p_idx].float()
        out, k = [], 0
        for ps in where:
            out.append(logits[k: k + len(ps)])
            k += len(ps)
        return out

    def _logits_sorted(self, rows: list[list[int]], where: list[list[int]], batch_size: int) -> list[torch.Tensor]:
        """`_logits_at` over rows of one length per pass (`batch_size` rows at most), in the original order.
        Batches of one exact length need no padding, so a row's numbers do not depend on which rows share its batch:
        the same candidates give bit-identical scores however the round is sharded over actors (mixed lengths
        differed by up to 6e-6 in U between 1 and 2 actors), and no slower here. Identical rows run once, and rows
        starting with the template prefix run after its cache (engines/hf_prefix.py): both depend on the row alone."""
        count = self.verify_tokens
        count.rows += len(rows)
        count.row_tokens += sum(len(r) for r in rows)
        first: dict[tuple, int] = {}
        twin = [first.setdefault((tuple(r), tuple(w)), i) if self.share else i
                for i, (r, w) in enumerate(zip(rows, where))]
        distinct = [i for i, j in enumerate(twin) if i == j and where[i]]
        count.distinct_rows += len(distinct)
        cached = {i for i in distinct if self.share and self.prefix.fits(rows[i], where[i])} \
            if distinct and self.share and self.prefix.kv(self, count) is not None else set()
        out: list[torch.Tensor | None] = [None] * len(rows)
        order = sorted(distinct, key=lambda i: (i in cached, len(rows[i])))
        for (use, n), same in itertools.groupby(order, key=lambda i: (i in cached, len(rows[i]))):
            same = list(same)
            for lo, hi in _chunks(len(same), batch_size):
                idx = same[lo:hi]
                count.computed += len(idx) * (n - len(self.prefix.tokens) if use else n)
                part = self._prefix_logits(idx, rows, where) if use else \
                    self._logits_at([rows[i] for i in idx], [where[i] for i in idx])
                for i, logits in zip(idx, part):
                    out[i] = logits
        empty = torch.zeros((0, 0))
        return [out[j] if out[j] is not None else empty for j in twin]  # type: ignore[misc]

    def _prefix_logits(self, idx: list[int], rows: list[list[int]], where: list[list[int]]) -> list[torch.Tensor]:
        """Rows idx (one length, all starting with the template prefix) after its cache, split as `_logits_at`."""
        vocab = int(self.model.config.get_text_config().vocab_size)
        cols = len({w for i in idx for w in where[i]})
        if len(idx) > 1 and len(idx) * cols * vocab > LOGITS_BUDGET:
            half = len(idx) // 2
            return self._prefix_logits(idx[:half], rows, where) + self._prefix_logits(idx[half:], rows, where)
        logits = self.prefix.logits(self, [rows[i] for i in idx], [where[i] for i in idx])
        out, k = [], 0
        for i in idx:
            out.append(logits[k: k + len(where[i])])
            k += len(where[i])
        return out

    # -- sampling ---------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int],
               batch_size: int = 512) -> list[list[Sample]]:
        check_sample_args(prompts, seeds, n, temperature, max_new_tokens)
        prompt_ids = self.prompts.encode_many(list(prompts))
        # candidates of prompts of one length per batch (no left padding): as in scoring, a candidate's logprobs then
        # do not depend on the rest of its batch, i.e. on how the round was sharded
        rows = sorted(((i, j) for i in range(len(prompts)) for j in range(n)), key=lambda r: len(prompt_ids[r[0]]))
        results: list[list[Sample | None]] = [[None] * n for _ in prompts]
        chunks = [same[lo:hi] for _, grp in itertools.groupby(rows, key=lambda r: len(prompt_ids[r[0]]))
                  for same in [list(grp)] for lo, hi in _chunks(len(same), batch_size)]
        for chunk in chunks:
            u = np.stack([candidate_uniforms(seeds[i], j, max_new_tokens) for i, j in chunk])
            for (i, j), s in zip(chunk, sample_rows(self, [prompt_ids[i] for i, _ in chunk], u, temperature)):
                results[i][j] = s
        return results  # type: ignore[return-value]

    # -- teacher-forced scoring and verifier scores: rows + the positions whose next-token logits are read -------
    def _score_rows(self, prompts: list[str], responses: list[list[int]]) -> tuple[list, list]:
        if len(prompts) != len(responses):
            raise ValueError(f"score needs one response per prompt ({len(prompts)} vs {len(responses)})")
        rows, where = [], []
        for pid, r in zip(self.prompts.encode_many(list(prompts)), responses):
            rows.append(pid + list(r))
            where.append(list(range(len(pid) - 1, len(pid) + len(r) - 1)))
        return rows, where

    @staticmethod
    def _scored(row: list[int], ps: list[int], logits: torch.Tensor) -> Scored:
        if not ps:
            return Scored(0.0, [], 0)
        tgt = torch.tensor([row[p + 1] for p in ps], device=logits.device)
        nll = (-torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).squeeze(-1)).tolist()
        return Scored(nll=float(sum(nll)), token_nll=nll, length=len(ps))

    def _judge_rows(self, queries: list, method: str) -> tuple[list, list, list, object]:
        """Rows, read positions, per-query plans and the scoring function of TF or QE queries (engines/judge.py)."""
        plan, scores = (judge.tf_plan, judge.tf_scores) if method == "tf" else (judge.qe_plan, judge.qe_scores)
        reads, plans = plan(queries, self.prompts.encode_many, lambda xs: self.encode_many(xs, special=False),
                            self.words)
        return reads.rows, reads.where, plans, scores

    @torch.inference_mode()
    def score(self, prompts: list[str], responses: list[list[int]], batch_size: int = 512) -> list[Scored]:
        """Uncertainty of each (prompt, response token ids) pair: total NLL, per-token NLL, length."""
        rows, where = self._score_rows(prompts, responses)
        return [self._scored(r, ps, lg) for r, ps, lg in zip(rows, where, self._logits_sorted(rows, where, batch_size))]

    @torch.inference_mode()
    def tf_score(self, queries: list[TFQuery], batch_size: int = 512) -> list[float]:
        """s = prod_k p_k(True) / (p_k(True) + p_k(False)), a judgment after every segment (workloads/base.py)."""
        rows, where, plans, scores = self._judge_rows(queries, "tf")
        return scores(plans, self._logits_sorted(rows, where, batch_size))

    @torch.inference_mode()
    def qe_score(self, queries: list[QEQuery], batch_size: int = 512) -> list[float]:
        """s = E[grade] / max grade, grade g with probability P(grade word g) normalised over `grade_tokens`."""
        rows, where, plans, scores = self._judge_rows(queries, "qe")
        return scores(plans, self._logits_sorted(rows, where, batch_size))

    @torch.inference_mode()
    def verify(self, queries: list, method: str, responses: list[tuple[str, list[int]]] | None,
               batch_size: int = 512) -> tuple[list[float], list[Scored] | None]:
        """Verifier scores and teacher-forced uncertainty in one pass: both kinds of rows in one length-sorted list."""
        jrows, jwhere, plans, judge_scores = self._judge_rows(queries, method)
        srows, swhere = self._score_rows([p for p, _ in responses or []], [list(r) for _, r in responses or []])
        logits = self._logits_sorted(jrows + srows, jwhere + swhere, batch_size)
        k = len(jrows)
        scores = judge_scores(plans, logits[:k])
        if responses is None:
            return scores, None
        return scores, [self._scored(r, ps, lg) for r, ps, lg in zip(srows, swhere, logits[k:])]
