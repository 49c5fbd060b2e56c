"""Each token once in the HF engine (engines/hf.py): the tokens every rendered prompt starts with -- a chat model's
system turn and user header -- are run through the model once per model version, and their KV cache is expanded over
every batch of rows that start with them (verifier queries, teacher-forced responses, sampled prompts); identical rows
(candidates with the same answer give the same verifier query) are computed once.

Which rows share the cached prefix depends on each row alone (its first tokens are exactly the prefix), never on
which other rows share its call: a row's numbers stay the same however a round is sharded over actors. Counts of the
tokens asked for and the tokens actually run (`TokenCount`) let a benchmark report the work per candidate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

PROBES = ("0", "Zq ?", "x\ny")  # openings sharing nothing but the template around them
MIN_PREFIX = 4  # a shorter shared opening (a lone BOS) is not worth a cache: rows run whole, as before


@dataclass
class TokenCount:
    """Verification work of an engine, cumulative: `rows`/`row_tokens` asked for (what running every row whole
    costs), `distinct_rows` after identical rows are merged, `computed` tokens actually run through the model
    (the shared prefix counted once per model version)."""
    rows: int = 0
    row_tokens: int = 0
    distinct_rows: int = 0
    computed: int = 0

    def as_dict(self) -> dict:
        return {"rows": self.rows, "row_tokens": self.row_tokens, "distinct_rows": self.distinct_rows,
                "computed": self.computed}


def template_prefix(prompts: Any) -> list[int]:
    """The token ids every opening rendered by `prompts` (chat.PromptFormat) starts with, whatever its text."""
    ids = prompts.encode_many(list(PROBES))
    k = 0
    while all(len(e) > k for e in ids) and len({e[k] for e in ids}) == 1:
        k += 1
    return list(ids[0][:k])


class SharedPrefix:
    """The template prefix's KV cache for the engine's current model version, and batches of rows run after it."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens if len(tokens) >= MIN_PREFIX else []
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._version: int | None = None

    def reset(self) -> None:
        """Forget the cache: new weights were loaded."""
        self._kv, self._version = None, None

    def fits(self, row: list[int], where: list[int]) -> bool:
        """Whether `row` starts with the prefix and every read position lies after it."""
        p = len(self.tokens)
        return bool(p) and len(row) > p and row[:p] == self.tokens and all(w >= p for w in where)

    def kv(self, engine, count: TokenCount | None = None) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The prefix's (key, value) per layer for the engine's model version, run once per version (None when the
        model's cache is not a plain per-layer one, e.g. sliding-window layers: rows then run whole)."""
        if not self.tokens:
            return None
        if self._version != engine.version:
            ids = torch.tensor([self.tokens], dtype=torch.long, device=engine.device)
            out = engine.model(input_ids=ids, use_cache=True)
            cache = getattr(out, engine._cache_kw)
            layers = getattr(cache, "layers", None)
            plain = layers is not None and all(type(layer).__name__ == "DynamicLayer" for layer in layers)
            self._kv = [(layer.keys, layer.values) for layer in layers] if plain else None
            if not plain:
                self.tokens = []
            self._version = engine.version
            if count is not None:
                count.computed += len(ids[0])
        return self._kv

    def cache(self, batch: int):
        """A fresh DynamicCache holding the prefix's keys and values expanded over `batch` rows (the forward
        appends to its own copy; the prefix's tensors stay as they are). `kv` must have run for this version."""
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))
                                            for k, v in self._kv])

    def logits(self, engine, rows: list[list[int]], where: list[list[int]]) -> torch.Tensor:
        """Kept float32 logits of rows of one length, all starting with the prefix: the rest of each row runs after
        the prefix's cache expanded over the batch. Returns [sum of len(where), V] in row order."""
        p, L, B = len(self.tokens), len(rows[0]), len(rows)
        self.kv(engine)
        cache = self.cache(B)
        ids = torch.tensor([r[p:] for r in rows], dtype=torch.long, device=engine.device)
        mask = torch.ones((B, L), dtype=torch.long, device=engine.device)
        pos = torch.arange(p, L, device=engine.device).expand(B, -1)
        cols = sorted({w - p for ws in where for w in ws})
        keep = torch.tensor(cols, dtype=torch.long, device=engine.device)
        kept = engine.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                            logits_to_keep=keep, **{engine._cache_kw: cache}).logits
        col_of = {c: k for k, c in enumerate(cols)}
        b_idx = [i for i, ws in enumerate(where) for _ in ws]
        p_idx = [col_of[w - p] for ws in where for w in ws]
        return kept[b_idx, p_idx].float()
