"""vLLM's context length and KV cache sized from the task, checked before any engine starts.

vLLM reserves KV cache for at least one sequence of `max_model_len`, which defaults to the model's own context
(8192 for SmolLM2: 0.35 GiB in float32) -- more than svgap's CPU default cache of 256 MiB, and the engine then died
in its own process with the reason only in Ray's worker logs. svgap's sequences are short and known in advance:
the longest prompt or verifier query of the task plus `generation.max_new_tokens`. That length, rounded up, is
the engine's `max_model_len` (unless model.vllm.max_model_len is set), and a cache too small for one such sequence
is a one-line error naming both numbers, before any actor starts.
"""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator.errors import SvgapError

MARGIN = 16  # verifier words and end-of-sequence tokens after the longest text


def kv_bytes_per_token(model_dir: Path, dtype: str) -> int:
    """Keys and values of every layer for one token (what vLLM's cache holds per token)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    cfg = cfg.get("text_config", cfg)
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    size = 4 if dtype == "float32" else 2
    return 2 * int(cfg["num_hidden_layers"]) * kv_heads * head_dim * size


def task_model_len(cfg, workload, model_dir: Path, system_prompt: str | None) -> int:
    """Longest prompt / verifier query of the task in tokens (through the chat template) + max_new_tokens."""
    from transformers import AutoTokenizer

    from orchestrator.engines.chat import PromptFormat

    tok = AutoTokenizer.from_pretrained(model_dir)
    fmt = PromptFormat.for_model(tok, model_dir, cfg.model.chat_template, system_prompt)
    problems = workload.problems("train", cfg.workload.train_prompts, 0) + \
        workload.problems("heldout", cfg.workload.heldout_prompts, 0)
    texts = [p.prompt for p in problems]
    query = workload.tf_query if cfg.verification.method == "tf" else workload.qe_query
    for p in problems[:64]:  # the queries' own words; the response in them is bounded by max_new_tokens below
        q = query(p, "")
        texts.append("".join(q.segments) if cfg.verification.method == "tf" else q.text)
    longest = max(len(ids) for ids in fmt.encode_many(texts))
    total = longest + cfg.generation.max_new_tokens + MARGIN
    return -(-total // 16) * 16


def size_engine(cfg, workload, model_dir: Path, system_prompt: str | None) -> dict:
    """The vLLM options this task needs (max_model_len), after checking that the KV cache holds a sequence."""
    v = cfg.model.vllm
    length = v.max_model_len or task_model_len(cfg, workload, model_dir, system_prompt)
    per_token = kv_bytes_per_token(model_dir, cfg.model.dtype)
    holds = (v.kv_cache_mb << 20) // per_token
    if holds < length:
        need = -(-(length * per_token) // (1 << 20))
        raise SvgapError(f"model.vllm.kv_cache_mb: {v.kv_cache_mb} MiB holds {holds} tokens of this model's KV cache, "
                         f"fewer than one sequence of max_model_len {length}; set kv_cache_mb >= {need} or a smaller "
                         f"model.vllm.max_model_len")
    return {"max_model_len": int(length)}
