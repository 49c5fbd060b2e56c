"""Sampling for the transformers engine (engines/hf.py): candidate j of prompt i is drawn by inverse-CDF sampling
from uniforms generated from (seeds[i], j) only, so a candidate does not depend on which other prompts share its batch
or its actor; the KV cache carries a batch from token to token, and a candidate ends at any of the model's
end-of-sequence ids or at the token completing one of its stop strings."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from orchestrator.engines.base import Sample


class SamplingEngine(Protocol):
    """What sampling reads of the HF engine (engines/hf.py's HFBackend), named here so this module does not import
    the engine that imports it."""
    model: Any
    tokenizer: Any
    device: Any
    pad_id: int
    stop_ids: Any
    stop_strings: Any
    _cache_kw: str
    prefix: Any  # hf_prefix.SharedPrefix
    share: bool

    def _pad_left(self, rows: Sequence[Sequence[int]]) -> Any: ...

_U64 = (1 << 64) - 1


def candidate_uniforms(seed: int, j: int, steps: int) -> np.ndarray:
    """The uniforms that drive candidate j of a prompt with this seed (float64, one per generated token)."""
    return np.random.default_rng([int(seed) & _U64, int(j) & _U64, 0x5A3]).random(steps)


def sample_rows(engine: SamplingEngine, rows: list[list[int]], u: np.ndarray, temperature: float) -> list[Sample]:
    """One batch of candidates, token by token with the KV cache: token t of row r is the inverse CDF of the
    temperature-scaled policy at u[r, t]; its logprob is the policy's at temperature 1. A row stops at a stop id,
    or at the token completing a stop string."""
    B, steps = u.shape
    ids, mask, pos = engine._pad_left(rows)
    uniforms = torch.from_numpy(u).to(engine.device)
    prefix = engine.prefix.tokens
    if engine.share and len(set(map(len, rows))) == 1 and all(engine.prefix.fits(r, [len(r) - 1]) for r in rows) \
            and engine.prefix.kv(engine) is not None:  # the chat template's opening: its cache, run once
        p = len(prefix)
        out = engine.model(input_ids=ids[:, p:], attention_mask=mask, position_ids=pos[:, p:], use_cache=True,
                           logits_to_keep=1, **{engine._cache_kw: engine.prefix.cache(B)})
    else:
        out = engine.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache = getattr(out, engine._cache_kw)
    logits = out.logits[:, -1].float()
    next_pos = pos[:, -1:] + 1
    tokens = torch.full((B, steps), engine.pad_id, dtype=torch.long, device=engine.device)
    logps = torch.zeros((B, steps), dtype=torch.float32, device=engine.device)
    done = torch.zeros(B, dtype=torch.bool, device=engine.device)
    lengths = torch.full((B,), steps, dtype=torch.long, device=engine.device)
    stop = torch.tensor(engine.stop_ids, dtype=torch.long, device=engine.device)
    for t in range(steps):
        logp = torch.log_softmax(logits, -1)  # the policy at temperature 1
        probs = torch.softmax(logits.double() / temperature, -1)
        cdf = probs.cumsum(-1)
        tok = torch.searchsorted(cdf, (uniforms[:, t] * cdf[:, -1]).unsqueeze(-1)).squeeze(-1)
        tok = tok.clamp(max=logits.shape[-1] - 1)
        tok = torch.where(done, torch.full_like(tok, engine.pad_id), tok)
        tokens[:, t] = tok
        logps[:, t] = torch.where(done, torch.zeros_like(logps[:, t]), logp.gather(-1, tok[:, None]).squeeze(-1))
        newly = (~done) & torch.isin(tok, stop)
        lengths = torch.where(newly, torch.full_like(lengths, t + 1), lengths)
        done = done | newly
        if bool(done.all()) or t == steps - 1:
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=engine.device)], dim=1)
        out = engine.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos, use_cache=True,
                           **{engine._cache_kw: cache})
        cache = getattr(out, engine._cache_kw)
        logits = out.logits[:, -1].float()
        next_pos = next_pos + 1
    tokens_l, logps_l, lengths_l, done_l = tokens.tolist(), logps.tolist(), lengths.tolist(), done.tolist()
    samples = []
    for r in range(B):
        k, finished = lengths_l[r], bool(done_l[r])
        if engine.stop_strings and not finished:
            k, finished = stop_string_cut(engine.tokenizer, engine.stop_strings, tokens_l[r][:k])
        tids = tokens_l[r][:k]
        samples.append(Sample(token_ids=tids, text=engine.tokenizer.decode(tids, skip_special_tokens=True),
                              logprobs=logps_l[r][:k], finished=finished))
    return samples


def stop_string_cut(tokenizer, stop_strings: Sequence[str], tids: list[int]) -> tuple[int, bool]:
    """(tokens kept, finished): a candidate ends with the token that completes the first stop string (the
    stop string stays in it, as transformers' StopStringCriteria leaves it); its logprobs are cut alike."""
    text = tokenizer.decode(tids, skip_special_tokens=True)
    ends = [text.find(s) + len(s) for s in stop_strings if s in text]
    if not ends:
        return len(tids), False
    need = min(ends)
    lo, hi = 1, len(tids)  # the shortest prefix whose text reaches `need` characters
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(tids[:mid], skip_special_tokens=True)) >= need:
            hi = mid
        else:
            lo = mid + 1
    return lo, True
