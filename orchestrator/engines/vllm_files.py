"""What the vLLM engine reads from disk: a model version written as files on the actor's own node.

vLLM loads LoRA adapters as PEFT folders and reloads full weights from safetensors folders; updates reach an actor
through Ray's object store, so each actor writes its own copy into its own scratch folder (any node works, no
shared storage needed). Also: the base fingerprint of a model folder, hashed exactly as the HF/peft actors hash
their loaded model (weights.base_fingerprint), so run/experiment.py can check every actor holds the same π_0.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.errors import SvgapError
from orchestrator.engines.weights import AdapterUpdate, FullUpdate


def write_peft_adapter(update: AdapterUpdate, folder: Path) -> list[str]:
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors) for `update`; returns the adapted
    module kinds (q_proj, ...). delta W = scaling * B @ A, with lora_alpha = scaling * r."""
    import torch
    from safetensors.torch import save_file

    if not update.tensors:
        raise SvgapError(f"adapter version {update.version} has no tensors")
    ranks = {a.shape[0] for a, _ in update.tensors.values()}
    if len(ranks) != 1:
        raise SvgapError(f"adapter version {update.version} mixes LoRA ranks {sorted(ranks)}")
    r = ranks.pop()
    tensors = {}
    for name, (a, b) in update.tensors.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = torch.from_numpy(np.ascontiguousarray(a, np.float32))
        tensors[f"base_model.model.{name}.lora_B.weight"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    kinds = sorted({name.rsplit(".", 1)[-1] for name in update.tensors})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": int(r), "lora_alpha": float(update.scaling * r),
        "lora_dropout": 0.0, "target_modules": kinds, "bias": "none", "fan_in_fan_out": False,
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "base_model_name_or_path": None}))
    return kinds


def write_full_weights(update: FullUpdate, folder: Path, dtype) -> Path:
    """Full weights as one safetensors file in `dtype` (the engine's), keyed by the HF state_dict names."""
    import torch
    from safetensors.torch import save_file

    if not update.tensors:
        raise SvgapError(f"full update version {update.version} has no tensors")
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in update.tensors.items()},
              str(folder / "model.safetensors"))
    return folder


def folder_tensors(model_dir: Path, dtype) -> dict:
    """The model's weights by HF parameter name as the HF engine would hold them: cast to `dtype`, and a tied
    lm_head left out (transformers lists the shared tensor once, as the embedding)."""
    from safetensors.torch import load_file

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise SvgapError(f"no *.safetensors weights in {model_dir} (the vLLM engine needs safetensors)")
    tensors = {}
    for f in files:
        tensors.update(load_file(str(f)))
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    return {k: v.to(dtype) for k, v in tensors.items()}
