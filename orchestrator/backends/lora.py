"""LoRA SFT on the BoN picks (and external examples): THEORY §1 step 6.

The loss is the uncertainty of the training responses, L = -(1/n) Σ_i log π(y_i | x_i) (summed over each
response's tokens, averaged over examples). One adapter persists across rounds, so π_{t+1} = π_t fine-tuned;
each round exports it as an AdapterUpdate for the inference actors.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.config import TrainingConfig
from orchestrator.errors import SvgapError
from orchestrator.weights import AdapterUpdate


@dataclass
class TrainingExample:
    """A (prompt, response) pair. BoN picks carry the sampled token ids; external data carries text."""
    prompt: str
    response_ids: list[int] | None = None
    response_text: str | None = None
    external: bool = False


@dataclass
class TrainingStats:
    examples: int
    external: int
    tokens: int
    steps: int
    loss_first: float
    loss_last: float
    seconds: float


class LoRATrainer:
    """Owns the trainable copy of the policy (base weights frozen, LoRA adapter trained)."""

    def __init__(self, model_dir: str | Path, cfg: TrainingConfig, device: str = "auto", dtype: str = "float32",
                 seed: int = 0) -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg, self.seed = cfg, seed
        from orchestrator.backends.device import resolve_device, torch_dtype

        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(dtype)).to(self.device)
        present = {n.rsplit(".", 1)[-1] for n, _ in base.named_modules()}
        missing = [m for m in cfg.target_modules if m not in present]
        if missing:
            raise SvgapError(f"training.target_modules: {missing} not in the model (it has e.g. "
                             f"{sorted(present & {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'})})")
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=list(cfg.target_modules), bias="none", task_type="CAUSAL_LM")
        torch.manual_seed(seed)
        self.model = get_peft_model(base, lora)
        self.version = 0

    def _encode(self, ex: TrainingExample) -> tuple[list[int], list[int]]:
        prompt_ids = self.tokenizer(ex.prompt, add_special_tokens=True)["input_ids"]
        if ex.response_ids is not None:
            resp = list(ex.response_ids)
        else:
            resp = self.tokenizer(ex.response_text or "", add_special_tokens=False)["input_ids"]
            resp = resp + [self.tokenizer.eos_token_id]
        return prompt_ids, resp

    def train(self, examples: list[TrainingExample], round_t: int) -> TrainingStats:
        """One round of SFT on `examples`; afterwards the adapter is version round_t + 1."""
        import torch

        if not examples:
            raise SvgapError(f"round {round_t}: no training examples")
        t0 = time.perf_counter()
        encoded = [self._encode(e) for e in examples]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + round_t)
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.model.train()
        losses: list[float] = []
        tokens = 0
        for _ in range(self.cfg.epochs):
            order = torch.randperm(len(encoded), generator=gen).tolist()
            for s in range(0, len(order), self.cfg.batch_size):
                batch = [encoded[i] for i in order[s:s + self.cfg.batch_size]]
                width = max(len(p) + len(r) for p, r in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                labels = torch.full((len(batch), width), -100, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, (p, r) in enumerate(batch):
                    seq = p + r
                    ids[row, :len(seq)] = torch.tensor(seq)
                    labels[row, len(p):len(seq)] = torch.tensor(r)
                    mask[row, :len(seq)] = 1
                ids, labels, mask = ids.to(self.device), labels.to(self.device), mask.to(self.device)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                target = labels[:, 1:]
                nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                        ignore_index=-100, reduction="sum")
                loss = nll / len(batch)  # per-example summed NLL: the loss is U_v itself
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                losses.append(float(loss.detach()))
                tokens += int((target != -100).sum())
        self.model.eval()
        self.version = round_t + 1
        return TrainingStats(len(examples), sum(e.external for e in examples), tokens, len(losses),
                             losses[0], losses[-1], time.perf_counter() - t0)

    def adapter(self) -> AdapterUpdate:
        """The current adapter as plain arrays keyed by the base model's module names."""
        tensors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        scaling = None
        for name, module in self.model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a = module.lora_A["default"].weight.detach().float().cpu().numpy()
                b = module.lora_B["default"].weight.detach().float().cpu().numpy()
                key = name.removeprefix("base_model.model.")
                tensors[key] = (a, b)
                scaling = float(module.scaling["default"])
        if scaling is None:
            raise SvgapError("the LoRA model has no adapted modules")
        return AdapterUpdate(self.version, scaling, tensors)

    def load_adapter(self, update: AdapterUpdate) -> None:
        """Restore a saved adapter (resume from the last finished round)."""
        import torch

        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for key, (a, b) in update.tensors.items():
                m = modules[f"base_model.model.{key}"]
                m.lora_A["default"].weight.copy_(torch.from_numpy(a))
                m.lora_B["default"].weight.copy_(torch.from_numpy(b))
        self.version = update.version
