"""How a model version reaches the vLLM engine (engines/vllm.py): every weight reloaded in place from a safetensors
folder (full weights, or an adapter merged into π_0's weights: `lora_mode: merge`), or a LoRA adapter served per
request (`lora_mode: request`); and an update put in the form the engine holds the model (widened heads,
vllm_widen.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from orchestrator.engines.weights import AdapterUpdate, FullUpdate
from orchestrator.errors import SvgapError


def for_engine(widen, update):
    """An update of the model as the engine holds it (widened heads, see vllm_widen.py), else itself."""
    if widen is None:
        return update
    if isinstance(update, AdapterUpdate):
        return AdapterUpdate(update.version, update.scaling,
                             {m: widen.adapter(m, a, b) for m, (a, b) in update.tensors.items()})
    return FullUpdate(update.version, widen.tensors(update.tensors))


def base_tensors(model_dir: Path) -> dict[str, np.ndarray]:
    """π_0's weights as float32 arrays, what merged adapters are added to."""
    from orchestrator.engines.device import torch_dtype
    from orchestrator.engines.vllm_files import folder_tensors

    return {k: v.float().numpy() for k, v in folder_tensors(model_dir, torch_dtype("float32")).items()}


def merged(base: dict[str, np.ndarray], update: AdapterUpdate) -> FullUpdate:
    """lora_mode merge: π_0's weights + scaling * B @ A as full weights (what the HF engine does in place);
    on CPU, vLLM's LoRA kernels make prefill-heavy scoring several times slower than a plain model."""
    tensors = dict(base)
    for name, (a, b) in update.tensors.items():
        key = f"{name}.weight"
        if key not in tensors:
            raise SvgapError(f"adapter version {update.version} names module {name!r} the model lacks")
        tensors[key] = (tensors[key] + update.scaling * (b.astype(np.float32) @ a.astype(np.float32))
                        ).astype(np.float32)
    return FullUpdate(update.version, tensors)


def reload(llm, update: FullUpdate, scratch: Path, dtype) -> None:
    """Every weight in place from a safetensors folder written for this version; older versions' folders go."""
    from orchestrator.engines.vllm_files import write_full_weights

    folder = write_full_weights(update, scratch / f"full-v{update.version:04d}", dtype)
    llm.collective_rpc("svgap_reload", args=(str(folder),))  # reload + rebuild CPU-packed copies
    llm.reset_prefix_cache()  # cached blocks hold the old model's keys and values
    for old in scratch.glob("full-v*"):
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def adapter_request(update: AdapterUpdate, scratch: Path, lora_id: int):
    """The LoRARequest serving this version's adapter, written as a PEFT folder; lora_id must be new (vLLM
    serves a reused id's old adapter)."""
    from vllm.lora.request import LoRARequest

    from orchestrator.engines.vllm_files import write_peft_adapter

    folder = scratch / f"adapter-v{update.version:04d}"
    write_peft_adapter(update, folder)
    return LoRARequest(f"svgap-v{update.version}", lora_id, str(folder))


def drop_adapter(llm, request) -> None:
    """The engine forgets a former version's adapter, and its folder goes."""
    llm.llm_engine.remove_lora(request.lora_int_id)
    shutil.rmtree(request.lora_path, ignore_errors=True)
