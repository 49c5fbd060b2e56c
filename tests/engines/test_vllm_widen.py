"""The widened model the vLLM engine runs for head sizes its CPU kernels lack (engines/vllm_widen.py) computes the
same numbers as the model itself -- checked with transformers alone, so it holds whatever engine loads it; and LoRA
adapters and full updates widen consistently with the weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from orchestrator.engines.vllm_widen import plan
from orchestrator.errors import SvgapError

KERNELS = (32, 64, 80, 96, 112, 128)


def _logprobs(model_dir, ids):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        return m(ids).logits.log_softmax(-1), m


def test_widened_default_model_gives_identical_logprobs(base_model_dir, tmp_path):
    cfg = json.loads((base_model_dir / "config.json").read_text())
    w = plan(cfg, KERNELS, base_model_dir)
    assert (w.head_dim, w.wide) == (16, 64)  # k = 4: q's factor 2 is exact
    wide = w.write_folder(base_model_dir, tmp_path / "wide", torch.float32)
    assert json.loads((wide / "config.json").read_text())["head_dim"] == 64
    ids = torch.randint(3, cfg["vocab_size"], (4, 24), generator=torch.Generator().manual_seed(0))
    ref, model = _logprobs(base_model_dir, ids)
    out, wide_model = _logprobs(wide, ids)
    # the same function up to float32 summation order: bit-identical in earlier installs, 2e-5 apart (logits up to
    # ~17: ~10 ulp) in a later one with the same torch -- q·k summed over 64 dims (48 of them zero) instead of 16
    assert (ref - out).abs().max().item() < 1e-4
    assert torch.equal(ref.argmax(-1), out.argmax(-1))

    # a LoRA adapter widened = the widened merge of the adapter (q/k/v rows and o_proj columns move with the heads)
    rng = np.random.default_rng(1)
    base = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    merged, widened_pairs = {}, {}
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
                 "model.layers.2.self_attn.o_proj", "model.layers.3.mlp.up_proj"):
        out_dim, in_dim = base[f"{name}.weight"].shape
        a = rng.normal(size=(4, in_dim)).astype(np.float32)
        b = rng.normal(size=(out_dim, 4)).astype(np.float32)
        merged[f"{name}.weight"] = base[f"{name}.weight"] + b @ a
        wa, wb = w.adapter(name, a, b)
        widened_pairs[name] = (wa, wb)
    wide_merged = w.tensors(merged)
    wide_base = {k: v.detach().numpy() for k, v in wide_model.state_dict().items()}
    for name, (wa, wb) in widened_pairs.items():
        np.testing.assert_allclose(wide_base[f"{name}.weight"] + wb @ wa, wide_merged[f"{name}.weight"],
                                   rtol=1e-5, atol=1e-5)


def test_models_that_need_no_widening_or_cannot_be_widened(tmp_path):
    llama = {"model_type": "llama", "hidden_size": 128, "num_attention_heads": 4}
    assert plan(llama, KERNELS, tmp_path) is None  # head_dim 32 has a kernel
    assert plan({**llama, "num_attention_heads": 8}, KERNELS, tmp_path).wide == 64  # 16 -> 64
    assert plan({**llama, "hidden_size": 96, "num_attention_heads": 4}, KERNELS, tmp_path).wide == 96  # 24 -> 96
    for bad, why in (({**llama, "num_attention_heads": 8, "model_type": "gemma2"}, "model_type 'gemma2'"),
                     ({**llama, "num_attention_heads": 8, "model_type": "qwen2"}, "model_type 'qwen2'"),
                     ({**llama, "num_attention_heads": 8, "partial_rotary_factor": 0.5}, "partial rotary"),
                     ({**llama, "num_attention_heads": 8, "rope_parameters": {"rope_type": "yarn"}}, "scaled"),
                     ({**llama, "hidden_size": 180, "num_attention_heads": 4}, "no supported head size")):
        with pytest.raises(SvgapError, match=why):
            plan(bad, KERNELS, tmp_path)
