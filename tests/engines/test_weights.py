"""Weight sync: adapters merge exactly, stale versions are refused, saved adapters reload identically."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from orchestrator.errors import SvgapError
from orchestrator.engines.weights import AdapterUpdate, StaleWeightsError, WeightsHolder


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

    from orchestrator.engines.hf import HFBackend
    from orchestrator.trainers.lora import LoRATrainer
    from orchestrator.config import TrainingConfig
    from orchestrator.engines.weights import base_fingerprint, check_same_base

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


def full_update(model, version, shift):
    """Every weight of `model` plus `shift`: what full fine-tuning publishes (HF state_dict names, float32)."""
    from orchestrator.engines.weights import FullUpdate

    return FullUpdate(version, {k: v.detach().numpy() + shift for k, v in model.state_dict().items()})


def test_full_update_loads_in_place_and_replaces_an_adapter_base():
    from orchestrator.engines.weights import FullUpdate

    model = tiny_model()
    q = model.model.layers[0].self_attn.q_proj.weight
    ptr = q.data_ptr()
    holder = WeightsHolder(model)
    holder.load(update(1, 1))  # an adapter first: its base is kept
    up = full_update(tiny_model(), 2, 0.25)
    assert holder.load(up) == 2 and holder.version == 2
    assert q.data_ptr() == ptr  # the same tensors, overwritten: no new model
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), up.tensors[k])
    holder.load(update(3, 3))  # a later adapter merges over the full weights, not over π_0
    a, b = update(3, 3).tensors["model.layers.0.self_attn.q_proj"]
    expect = torch.from_numpy(up.tensors["model.layers.0.self_attn.q_proj.weight"]) + 2.0 * torch.from_numpy(b) @ \
        torch.from_numpy(a)
    assert torch.allclose(q, expect, atol=1e-5)
    assert isinstance(up, FullUpdate) and up.nbytes() == sum(v.nbytes for v in up.tensors.values())


@pytest.mark.parametrize("change, needle", [
    (lambda t: t.update({"model.layers.7.nope.weight": np.zeros(3, np.float32)}), "names 'model.layers.7.nope.weight'"),
    (lambda t: t.pop("model.norm.weight"), "lacks the model's 'model.norm.weight'"),
    (lambda t: t.update({"model.norm.weight": np.zeros(3, np.float32)}), "'model.norm.weight' has shape (3,)"),
])
def test_bad_full_update_is_refused_and_changes_nothing(change, needle):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    up = full_update(model, 1, 1.0)
    change(up.tensors)
    holder = WeightsHolder(model)
    with pytest.raises(SvgapError, match=f"full weights version 1.* {re.escape(needle)}"):
        holder.load(up)
    assert holder.version == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_full_update_round_trip_and_run_folder_keeps_only_the_committed(tmp_path):
    """The commit protocol (store/commit.py): saving v2 keeps v1 -- state.json still names it -- and only the commit
    of v2 deletes v1; adapters are kept per version."""
    from orchestrator.engines.weights import FullUpdate, save_update
    from orchestrator.store import commit

    for v in (1, 2):
        save_update(tmp_path, full_update(tiny_model(), v, float(v)))
        assert (tmp_path / "weights" / "v001.npz").is_file()  # not deleted before a state.json names v2
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["v001.npz", "v002.npz"]
    commit.commit(tmp_path, {"run_id": "r", "last_finished_round": 1, "model_version": 2})
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["v002.npz"]
    back = FullUpdate.load(tmp_path / "weights" / "v002.npz")
    ref = full_update(tiny_model(), 2, 2.0)
    assert back.version == 2 and sorted(back.tensors) == sorted(ref.tensors)
    for k in ref.tensors:
        np.testing.assert_array_equal(back.tensors[k], ref.tensors[k])
    for v in (1, 2):
        save_update(tmp_path, update(v, v))
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["v001.npz", "v002.npz"]


def test_sync_version_check_names_the_actors():
    from orchestrator.engines.weights import check_versions

    check_versions({"generation[0]": 3, "verification[0]": 3}, 3)
    with pytest.raises(StaleWeightsError, match=r"sync of model version 3 failed: generation\[1\] holds 2$"):
        check_versions({"generation[0]": 3, "generation[1]": 2, "verification[0]": 3}, 3)


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_torch_trainer_save_restore_round_trip(base_model_dir, tmp_path, mode):
    """save(dir) after a round, restore(dir) into a fresh trainer: the same update (resume)."""
    from orchestrator.trainers.lora import TorchTrainer
    from orchestrator.trainers.base import TrainingExample
    from orchestrator.config import TrainingConfig
    from orchestrator.engines.weights import AdapterUpdate, FullUpdate

    cfg = TrainingConfig(mode=mode, batch_size=4, epochs=1)
    tr = TorchTrainer(base_model_dir, cfg, device="cpu")
    _, up = tr.train([TrainingExample("1+2=", response_text="3"), TrainingExample("2+2=", response_text="4")], 0)
    assert isinstance(up, AdapterUpdate if mode == "lora" else FullUpdate) and up.version == 1
    tr.save(tmp_path)
    fresh = TorchTrainer(base_model_dir, cfg, device="cpu")
    assert fresh.restore(tmp_path) == 1
    again = fresh.update()
    for k, v in up.tensors.items():
        for x, y in zip(v if mode == "lora" else (v,), again.tensors[k] if mode == "lora" else (again.tensors[k],)):
            np.testing.assert_array_equal(x, y)
