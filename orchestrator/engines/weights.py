"""Weight sync: the trained LoRA adapter or the full weights go through the Ray object store with a version number.

Version 0 is the base model π_0; training round t publishes version t+1 (π_{t+1}). Generation and verification
actors merge an adapter into their base weights (W = W0 + scale·B·A, so inference pays nothing for LoRA) or copy
full weights over their own, in place, and refuse to work for a round that asks for another version than the one
they hold. `publish` puts an update in the object store once: actors on one node read that one copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator.errors import SvgapError
from orchestrator.store import commit
from orchestrator.store.files import replacing


class StaleWeightsError(SvgapError):
    """An actor was asked to work with a model version it does not hold."""


@dataclass
class AdapterUpdate:
    """A LoRA adapter as plain arrays: module name -> (A [r, in], B [out, r]); delta W = scaling · B @ A."""
    version: int
    scaling: float
    tensors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(a.nbytes + b.nbytes for a, b in self.tensors.values())

    def write(self, path: Path) -> None:
        """The arrays into `path` as it is (a temporary file of an atomic write; it must end in .npz)."""
        arrays = {f"{k}::A": a for k, (a, _) in self.tensors.items()}
        arrays.update({f"{k}::B": b for k, (_, b) in self.tensors.items()})
        np.savez(path, __version__=np.array(self.version), __scaling__=np.array(self.scaling), **arrays)

    def save(self, path: str | Path) -> None:
        """Write atomically (tmp + fsync + rename) so a resume never reads half an adapter."""
        _save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "AdapterUpdate":
        data = np.load(path)
        names = sorted({k.rsplit("::", 1)[0] for k in data.files if "::" in k})
        return cls(int(data["__version__"]), float(data["__scaling__"]),
                   {n: (data[f"{n}::A"], data[f"{n}::B"]) for n in names})


@dataclass
class FullUpdate:
    """Full fine-tuning's result: every weight of π_{t+1}, keyed by the HF model's own state_dict names (no peft
    prefix), as plain float arrays in the model's training dtype (bf16 travels as float32)."""
    version: int
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())

    def write(self, path: Path) -> None:
        """The arrays into `path` as it is (a temporary file of an atomic write; it must end in .npz)."""
        np.savez(path, __version__=np.array(self.version), __full__=np.array(1), **self.tensors)

    def save(self, path: str | Path) -> None:
        """Write atomically (tmp + fsync + rename) so a resume never reads half a model."""
        _save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "FullUpdate":
        data = np.load(path)
        return cls(int(data["__version__"]), {k: data[k] for k in data.files if not k.startswith("__")})


WeightsUpdate = AdapterUpdate | FullUpdate


def _save(update: WeightsUpdate, path: str | Path) -> None:
    path = Path(path)
    with replacing(path, path.with_suffix(".tmp.npz")) as tmp:  # .npz: np.savez would add it
        update.write(tmp)


def publish(update: WeightsUpdate):
    """Put the update in the object store once; every actor reads the same object (zero-copy on a node, one
    transfer per other node)."""
    import ray

    return ray.put(update)


def check_versions(held: dict[str, int], version: int) -> None:
    """After a sync every inference actor (name -> version its load_weights returned) must hold `version`."""
    wrong = [f"{who} holds {v}" for who, v in held.items() if v != version]
    if wrong:
        raise StaleWeightsError(f"sync of model version {version} failed: {', '.join(wrong)}")


def save_update(root: Path, update: WeightsUpdate) -> Path:
    """Into the run folder, the commit protocol's first step (store/commit.py): adapters/vNNN.npz or weights/vNNN.npz
    written and fsynced beside the previous version, which stays until state.json names the new one (full weights:
    commit.retire deletes the old file only then; adapters are kept per version)."""
    path = commit.version_path(root, update.version, isinstance(update, FullUpdate))
    return commit.stage(path, update.write)


class WeightsHolder:
    """Inside an actor: loads a model version in place -- an adapter merged over the kept base weights of the
    adapted modules, or full weights copied over every tensor -- and remembers the version it holds."""

    def __init__(self, model) -> None:
        self.model = model
        self.version = 0
        self._base: dict[str, "object"] = {}

    def load(self, update: WeightsUpdate) -> int:
        if isinstance(update, FullUpdate):
            return self._load_full(update)
        import torch

        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for name, (a, b) in update.tensors.items():
                if name not in modules:
                    raise SvgapError(f"adapter version {update.version} names module {name!r} the model lacks")
                weight = modules[name].weight
                if name not in self._base:
                    self._base[name] = weight.detach().clone()
                delta = torch.from_numpy(np.ascontiguousarray(b)).float() @ torch.from_numpy(np.ascontiguousarray(a)).float()
                weight.copy_((self._base[name].float() + update.scaling * delta.to(weight.device)).to(weight.dtype))
        self.version = update.version
        return self.version

    def _load_full(self, update: FullUpdate) -> int:
        """Every weight of π_{t+1}, copied into the existing tensors (no new model, no reload): names and shapes
        must match the model's state_dict exactly, and nothing is changed unless they all do."""
        import torch

        state = self.model.state_dict()
        unknown = sorted(set(update.tensors) - set(state))
        missing = sorted(set(state) - set(update.tensors))
        if unknown or missing:
            what = f"names {unknown[0]!r}, which the model lacks" if unknown else f"lacks the model's {missing[0]!r}"
            raise SvgapError(f"full weights version {update.version} {what}")
        for k, v in update.tensors.items():
            if tuple(v.shape) != tuple(state[k].shape):
                raise SvgapError(f"full weights version {update.version}: {k!r} has shape {tuple(v.shape)}, the "
                                 f"model's is {tuple(state[k].shape)}")
        with torch.no_grad():
            for k, v in update.tensors.items():
                state[k].copy_(torch.from_numpy(np.ascontiguousarray(v)).to(state[k].device, state[k].dtype))
        self._base.clear()  # the base of later adapters would be these weights, not π_0's
        self.version = update.version
        return self.version

    def require(self, version: int, who: str) -> None:
        if version != self.version:
            raise StaleWeightsError(f"{who} holds model version {self.version} but was asked to work with version "
                                    f"{version}; refusing stale weights")


def base_fingerprint(model, sample: int = 4096) -> str:
    """A hash of the base weights (names, shapes and a strided sample of each tensor's values), taken before any
    adapter: every actor must start from the same π_0, and nodes that build or load it themselves may not.
    `model` is a torch model, or a mapping of HF parameter name -> tensor (an engine that reads the model folder
    itself, like vLLM, hashes the same weights this way)."""
    import hashlib

    import torch

    h = hashlib.sha256()
    # peft wraps the base: base_model.model.<name>, and adapted layers keep their weight under .base_layer
    named = model.items() if isinstance(model, dict) else model.named_parameters()
    params = {n.removeprefix("base_model.model.").replace(".base_layer.", "."): p
              for n, p in named if "lora_" not in n}
    with torch.no_grad():
        for name in sorted(params):
            flat = params[name].detach().reshape(-1)
            step = max(1, flat.numel() // sample)
            h.update(f"{name}:{tuple(params[name].shape)}".encode())
            h.update(flat[::step].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_same_base(fingerprints: dict[str, str]) -> None:
    """fingerprints: actor name -> base_fingerprint. Different π_0 across actors would mix models in one round."""
    groups: dict[str, list[str]] = {}
    for who, fp in fingerprints.items():
        groups.setdefault(fp, []).append(who)
    if len(groups) > 1:
        parts = "; ".join(f"{fp}: {', '.join(ws)}" for fp, ws in groups.items())
        raise SvgapError(f"the actors hold different base models ({parts}); give every node the same weights "
                         f"(model.path on shared storage, or copy one node's model cache to the others)")

