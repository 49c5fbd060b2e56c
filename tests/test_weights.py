"""Weight sync: adapters merge exactly, stale versions are refused, saved adapters reload identically."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from orchestrator.errors import SvgapError
from orchestrator.weights import AdapterUpdate, StaleWeightsError, WeightsHolder


def tiny_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


def update(version, seed, scale=2.0):
    rng = np.random.default_rng(seed)
    name = "model.layers.0.self_attn.q_proj"
    return AdapterUpdate(version, scale, {name: (rng.normal(size=(4, 16)).astype(np.float32),
                                                 rng.normal(size=(16, 4)).astype(np.float32))})


def test_merge_is_base_plus_scaled_delta_not_cumulative():
    model = tiny_model()
    w0 = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    holder = WeightsHolder(model)
    for v, seed in ((1, 1), (2, 2)):
        up = update(v, seed)
        holder.load(up)
        a, b = up.tensors["model.layers.0.self_attn.q_proj"]
        expect = w0 + 2.0 * torch.from_numpy(b) @ torch.from_numpy(a)
        assert torch.allclose(model.model.layers[0].self_attn.q_proj.weight, expect, atol=1e-5)
        assert holder.version == v


def test_stale_version_is_refused():
    holder = WeightsHolder(tiny_model())
    holder.require(0, "generation actor")
    holder.load(update(1, 1))
    with pytest.raises(StaleWeightsError, match="holds model version 1 but was asked to work with version 0"):
        holder.require(0, "generation actor")
    holder.require(1, "generation actor")


def test_unknown_module_is_an_error():
    bad = AdapterUpdate(1, 1.0, {"model.layers.9.nope": (np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))})
    with pytest.raises(SvgapError) as e:
        WeightsHolder(tiny_model()).load(bad)
    assert str(e.value) == "adapter version 1 names module 'model.layers.9.nope' the model lacks"


def test_save_load_round_trip(tmp_path):
    up = update(3, 7, scale=0.5)
    up.save(tmp_path / "v003.npz")
    back = AdapterUpdate.load(tmp_path / "v003.npz")
    assert back.version == 3 and back.scaling == 0.5
    for k, (a, b) in up.tensors.items():
        np.testing.assert_array_equal(back.tensors[k][0], a)
        np.testing.assert_array_equal(back.tensors[k][1], b)
    assert not list(tmp_path.glob("*.tmp*"))


def test_base_fingerprint_same_for_inference_and_trainer_models_and_catches_a_different_base(base_model_dir):
    import torch

    from orchestrator.backends.hf import HFBackend
    from orchestrator.backends.lora import LoRATrainer
    from orchestrator.config import TrainingConfig
    from orchestrator.weights import base_fingerprint, check_same_base

    be = HFBackend(base_model_dir, device="cpu", threads=1)
    trainer = LoRATrainer(base_model_dir, TrainingConfig(), device="cpu")
    a, b = base_fingerprint(be.model), base_fingerprint(trainer.model)
    assert a == b
    check_same_base({"generation[0]": a, "training[0]": b})
    with torch.no_grad():
        be.model.model.layers[0].mlp.up_proj.weight[0, 0] += 1e-3  # another node's slightly different build
    c = base_fingerprint(be.model)
    assert c != a
    with pytest.raises(SvgapError, match=r"the actors hold different base models .*generation\[1\]"):
        check_same_base({"generation[0]": a, "generation[1]": c, "training[0]": b})
