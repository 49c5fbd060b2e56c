"""vLLM's context length and KV cache from the task (orchestrator/engines/vllm_sizing.py), without starting vLLM."""
import json

import pytest

from orchestrator.engines.vllm_sizing import kv_bytes_per_token, size_engine
from orchestrator.config import load
from orchestrator.errors import SvgapError


def smollm2_like(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_attention_heads": 9, "num_key_value_heads": 3,
                                                      "hidden_size": 576, "num_hidden_layers": 30}))
    return tmp_path


def test_kv_bytes_per_token(tmp_path):
    d = smollm2_like(tmp_path)
    assert kv_bytes_per_token(d, "float32") == 2 * 30 * 3 * 64 * 4  # 46 KB: 8192 tokens = 0.35 GiB
    assert kv_bytes_per_token(d, "bfloat16") == 2 * 30 * 3 * 64 * 2


def test_too_small_cache_is_one_line_naming_both_numbers(tmp_path):
    cfg = load(None, ["model.engine=vllm", "model.vllm.max_model_len=8192", "model.vllm.kv_cache_mb=256"])
    with pytest.raises(SvgapError, match=r"kv_cache_mb: 256 MiB holds 5825 tokens .* max_model_len 8192; set "
                                         r"kv_cache_mb >= 360"):
        size_engine(cfg, None, smollm2_like(tmp_path), None)
    cfg = load(None, ["model.engine=vllm", "model.vllm.max_model_len=512"])
    assert size_engine(cfg, None, smollm2_like(tmp_path), None) == {"max_model_len": 512}
