"""An exactly equivalent model with wider attention heads, for head sizes vLLM's CPU attention has no kernel for.

vLLM on CPU attends with head_dim 32, 64, 80, ... only; the default arithmetic model has 4 heads of 16. Rather
than sending the user to another model, the engine loads the same function written with heads of d' = k·d:

- rotary (neox style, as Llama and Mistral use it) pairs dim i with i + d/2 at frequency base^(-2i/d). Original
  dim i goes to k·i and dim d/2 + i to d'/2 + k·i: there the frequency is base^(-2ki/d') = base^(-2i/d), the same.
  Every other dim of q, k and v is zero, so it adds nothing to q·k and carries nothing to o_proj;
- the attention scale becomes 1/sqrt(d'): q is multiplied by sqrt(d'/d) so q·k/sqrt(d') = q·k/sqrt(d); with
  d'/d a perfect square (16 -> 64: q·2) that product is exact, so the engine computes the same numbers.

Weights, full updates and LoRA adapters all pass through `Widen` before the engine sees them (an adapter's B rows
of q/k/v and A columns of o_proj move with the heads); the fingerprint is taken from the original folder, so every
actor still proves it holds the same π_0. Measured: the widened model's logprobs equal the HF engine's to float32
rounding (tests/engines/test_vllm.py).
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import SvgapError

# neox-style rotary over the whole head, no q/k norms, and vLLM reads head_dim from the config (its Qwen2 does not)
WIDENABLE = ("llama", "mistral")


@dataclass(frozen=True)
class Widen:
    head_dim: int  # d, the model's
    wide: int  # d', the engine's
    heads: int
    kv_heads: int

    def _index(self) -> np.ndarray:
        """Where each of a head's d dims goes among its d' dims."""
        k, half = self.wide // self.head_dim, self.head_dim // 2
        i = np.arange(half)
        return np.concatenate([k * i, self.wide // 2 + k * i])

    def rows(self, w: np.ndarray, heads: int, scale: float = 1.0) -> np.ndarray:
        """Output rows of q/k/v (weights [heads·d, in] or biases [heads·d]) -> [heads·d', ...]."""
        w = np.asarray(w, dtype=np.float32)
        src = w.reshape(heads, self.head_dim, *w.shape[1:])
        out = np.zeros((heads, self.wide, *w.shape[1:]), dtype=np.float32)
        out[:, self._index()] = src * scale
        return out.reshape(heads * self.wide, *w.shape[1:])

    def cols(self, w: np.ndarray) -> np.ndarray:
        """Input columns of o_proj [out, heads·d] -> [out, heads·d']."""
        w = np.asarray(w, dtype=np.float32)
        src = w.reshape(w.shape[0], self.heads, self.head_dim)
        out = np.zeros((w.shape[0], self.heads, self.wide), dtype=np.float32)
        out[:, :, self._index()] = src
        return out.reshape(w.shape[0], self.heads * self.wide)

    def _kind(self, module: str) -> tuple[str, int, float] | None:
        kind = module.rsplit(".", 1)[-1]
        if kind == "q_proj":
            return kind, self.heads, math.sqrt(self.wide / self.head_dim)
        if kind in ("k_proj", "v_proj"):
            return kind, self.kv_heads, 1.0
        if kind == "o_proj":
            return kind, self.heads, 1.0
        return None

    def tensors(self, named: dict) -> dict:
        """Full weights by HF name (numpy or torch) -> the widened model's."""
        out = {}
        for name, w in named.items():
            module, _, leaf = name.rpartition(".")
            kind = self._kind(module)
            arr = w.float().numpy() if hasattr(w, "numpy") else np.asarray(w)
            if kind is None:
                out[name] = w
            elif kind[0] == "o_proj":
                out[name] = self.cols(arr) if leaf == "weight" else arr
            else:
                out[name] = self.rows(arr, kind[1], kind[2])
        return out

    def adapter(self, module: str, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A LoRA pair (A [r, in], B [out, r]) of the model -> the widened model's."""
        kind = self._kind(module)
        if kind is None:
            return a, b
        if kind[0] == "o_proj":
            return self.cols(a), b
        return a, self.rows(b, kind[1], kind[2])

    def write_folder(self, src: Path, dst: Path, dtype) -> Path:
        """The widened model as a save_pretrained folder (config + safetensors; other files copied)."""
        import torch
        from safetensors.torch import load_file, save_file

        dst.mkdir(parents=True, exist_ok=True)
        tensors: dict = {}
        for f in sorted(src.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        wide = self.tensors(tensors)
        save_file({k: (v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))).to(dtype)
                   .contiguous() for k, v in wide.items()}, str(dst / "model.safetensors"))
        for f in src.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name not in ("config.json",
                                                                             "model.safetensors.index.json"):
                shutil.copy2(f, dst / f.name)
        config = json.loads((src / "config.json").read_text())
        config["head_dim"] = self.wide
        (dst / "config.json").write_text(json.dumps(config, indent=2))
        return dst


def head_dim_of(config: dict) -> int | None:
    heads = config.get("num_attention_heads")
    return config.get("head_dim") or (config["hidden_size"] // heads if heads and config.get("hidden_size") else None)


def plan(config: dict, supported: tuple[int, ...], where: Path) -> Widen | None:
    """None when the engine has a kernel for the model's head_dim; a Widen when an exact wider model exists; else a
    named error."""
    d = head_dim_of(config)
    if d is None or d in supported:
        return None
    # k = d'/d a perfect square: q's factor sqrt(k) is exact in any float format, so the widened model computes
    # the same numbers, not merely the same function (with k = 2, sqrt(2)·W_q rounds: ~1e-5 off in logprobs)
    fits = [w for w in sorted(supported) if w > d and w % d == 0]
    wide = next((w for w in fits if math.isqrt(w // d) ** 2 == w // d), fits[0] if fits else None)
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    why = None
    if config.get("model_type") not in WIDENABLE:
        why = f"its model_type {config.get('model_type')!r} is not one of {', '.join(WIDENABLE)}"
    elif rope_type != "default" or config.get("partial_rotary_factor", 1.0) != 1.0:
        why = "it uses scaled or partial rotary embeddings"
    elif d % 2 or wide is None:
        why = "no supported head size is a multiple of it"
    if why:
        dims = ", ".join(map(str, supported))
        raise SvgapError(f"model.engine vllm: vLLM's CPU attention supports head_dim {dims} but the model at {where} "
                         f"has head_dim {d}, and it cannot be widened exactly ({why}); use model.engine hf")
    return Widen(d, wide, int(config["num_attention_heads"]),
                 int(config.get("num_key_value_heads") or config["num_attention_heads"]))
