"""The SFT math every trainer shares (docs/theory.md §1), so the torch and DeepSpeed engines train the same thing.

The loss is the uncertainty of the training responses, L = -(1/n) Σ_i log π(y_i | x_i) (summed over each
response's tokens, averaged over the examples of a global batch). The order of global batches comes from one seeded
permutation per epoch, the same on every rank, so a data-parallel group sees exactly the batches one process would.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.config import TrainingConfig
from orchestrator.errors import SvgapError
from orchestrator.engines.weights import AdapterUpdate, FullUpdate, WeightsUpdate

LORA_PREFIX = "base_model.model."


def load_policy(model_dir: str | Path, cfg: TrainingConfig, device, dtype, seed: int):
    """(tokenizer, model): the HF base with a fresh LoRA adapter (mode lora) or itself, all weights trainable (full)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
    if cfg.mode == "full":
        base.requires_grad_(True)
        return tokenizer, base
    from peft import LoraConfig, get_peft_model

    present = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
    missing = [m for m in cfg.target_modules if m not in present]
    if missing:
        raise SvgapError(f"training.target_modules: {missing} not in the model (it has e.g. "
                         f"{sorted(present & {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'})})")
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    return tokenizer, get_peft_model(base, lora)


def encode(tokenizer, ex, prompts=None) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids): BoN picks keep their sampled tokens; external text gets an EOS. `prompts` (a
    engines.chat.PromptFormat) opens the conversation as the inference engines do (chat template or plain)."""
    prompt_ids = (prompts.encode(ex.prompt) if prompts is not None
                  else tokenizer(ex.prompt, add_special_tokens=True)["input_ids"])
    if ex.response_ids is not None:
        return prompt_ids, list(ex.response_ids)
    resp = tokenizer(ex.response_text or "", add_special_tokens=False)["input_ids"]
    return prompt_ids, resp + [tokenizer.eos_token_id]


def global_batches(n: int, batch_size: int, epochs: int, seed: int, round_t: int) -> list[list[int]]:
    """Example indices of every optimizer step of round `round_t`, in order (one permutation per epoch)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + round_t)
    out: list[list[int]] = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).tolist()
        out += [order[s:s + batch_size] for s in range(0, n, batch_size)]
    return out


def forwarded_tokens(encoded: list[tuple[list[int], list[int]]], batches: list[list[int]]) -> int:
    """Tokens a round's passes run (prompt + response of every example of every step; padding left out): the
    training work, where `tokens` counts only the response tokens the loss reads."""
    return sum(len(encoded[i][0]) + len(encoded[i][1]) for step in batches for i in step)


def seed_round(seed: int, round_t: int) -> None:
    """Seed torch for round t's training (dropout): from (seed, round) alone, so a resumed run -- a fresh trainer that
    did not train the earlier rounds -- draws what the uninterrupted run drew."""
    import torch

    torch.manual_seed((seed * 1_000_003 + round_t) * 7919 + 17)


def nll_sum(model, batch: list[tuple[list[int], list[int]]], pad: int, device):
    """Summed response NLL of a micro-batch (a 0-dim tensor with grad) and its number of response tokens."""
    import torch

    width = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (p, r) in enumerate(batch):
        seq = p + r
        ids[row, :len(seq)] = torch.tensor(seq)
        labels[row, len(p):len(seq)] = torch.tensor(r)
        mask[row, :len(seq)] = 1
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                            ignore_index=-100, reduction="sum")
    return nll, int((target != -100).sum())


def export_update(model, mode: str, version: int) -> WeightsUpdate:
    """The trained policy as plain arrays: the LoRA adapter keyed by base-model module names, or every weight."""
    def arr(t) -> np.ndarray:  # a copy: .numpy() of a float32 CPU tensor would alias the weights still training
        return np.array(t.detach().float().cpu().numpy(), copy=True)

    if mode == "full":
        return FullUpdate(version, {k: arr(v) for k, v in model.state_dict().items()})
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scaling = None
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a, b = arr(module.lora_A["default"].weight), arr(module.lora_B["default"].weight)
            tensors[name.removeprefix(LORA_PREFIX)] = (a, b)
            scaling = float(module.scaling["default"])
    if scaling is None:
        raise SvgapError("the LoRA model has no adapted modules")
    return AdapterUpdate(version, scaling, tensors)


def load_update(model, update: WeightsUpdate) -> None:
    """Put a saved update back into the trainable model (resume): adapter tensors or every weight."""
    import torch

    with torch.no_grad():
        if isinstance(update, FullUpdate):
            state = model.state_dict()
            unknown = sorted(set(update.tensors) - set(state))
            if unknown:
                raise SvgapError(f"full weights version {update.version} name {unknown[0]!r}, which the model lacks")
            for k, v in update.tensors.items():
                state[k].copy_(torch.from_numpy(v).to(state[k].dtype))
            return
        modules = dict(model.named_modules())
        for key, (a, b) in update.tensors.items():
            m = modules.get(f"{LORA_PREFIX}{key}")
            if m is None or not hasattr(m, "lora_A"):
                raise SvgapError(f"adapter version {update.version} names module {key!r} the model has no adapter on")
            m.lora_A["default"].weight.copy_(torch.from_numpy(a))
            m.lora_B["default"].weight.copy_(torch.from_numpy(b))


def load_saved(directory: str | Path) -> WeightsUpdate:
    """The update a trainer's save(dir) wrote (adapter or full weights)."""
    path = Path(directory) / "update.npz"
    if not path.is_file():
        raise SvgapError(f"no saved trainer state at {path} (on several nodes the folder must be shared storage)")
    with np.load(path) as data:
        full = "__full__" in data.files
    return FullUpdate.load(path) if full else AdapterUpdate.load(path)
