"""The `deepspeed` training engine: one rank of a data-parallel ZeRO group (stages 0-3), LoRA or full fine-tuning.

Every rank sees the same seeded global batches as the torch engine (sft.global_batches) and takes its share of each:
example j of a global batch of b goes to rank j mod K, in `gas` micro-batches of `micro`. Each micro-batch's loss is
its summed NLL scaled by K·gas/b, so after DeepSpeed's 1/gas scaling and its average over K ranks the gradient is
exactly the torch engine's (Σ NLL)/b -- also for a short last batch (a rank with nothing left runs a zero-loss
micro-batch so the collectives stay in step). Rank 0 returns the update.

What the CPU build of DeepSpeed needs here (see issue 10's measured facts): DS_ACCELERATOR before the import,
gloo on CPU (nccl on CUDA), a timeout on init_distributed, no JIT build of the shm all-reduce op (inference only)
nor of fused Adam (a torch AdamW is passed in), and MLflow telemetry off (import deepspeed imports mlflow).
"""
from __future__ import annotations

import importlib
import os
import time
from datetime import timedelta
from pathlib import Path

from orchestrator.trainers import sft
from orchestrator.engines.chat import PromptFormat
from orchestrator.trainers.base import RankEnv, TrainingExample, TrainingStats
from orchestrator.config import TrainingConfig
from orchestrator.errors import SvgapError
from orchestrator.engines.weights import WeightsUpdate

STALE_LOCK_S = 600.0  # a JIT build lock older than this was left by a killed build


def ds_config(cfg: TrainingConfig, world_size: int) -> dict:
    """DeepSpeed's config dict from `training.deepspeed` (+ the raw `ds_config` override, merged last)."""
    d = cfg.deepspeed
    micro, gas = d.micro_and_accumulation(cfg.batch_size, world_size)
    zero: dict = {"stage": d.zero_stage}
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    out = {
        "train_batch_size": micro * gas * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "gradient_clipping": d.gradient_clipping,
        "zero_optimization": zero,
        "bf16": {"enabled": d.precision == "bf16"},
        "zero_allow_untested_optimizer": True,  # the torch AdamW we pass (no fused-Adam JIT build)
        "zero_force_ds_cpu_optimizer": False,  # offload with that AdamW instead of building DeepSpeedCPUAdam
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    return _merge(out, d.ds_config)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _clear_stale_build_locks() -> None:
    """A process killed mid JIT build leaves `lock` files that make the next build wait forever."""
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or "~/.cache/torch_extensions").expanduser()
    if not root.is_dir():
        return
    now = time.time()
    for lock in root.glob("**/lock"):
        try:
            if now - lock.stat().st_mtime > STALE_LOCK_S:
                lock.unlink()
        except OSError:
            pass


def import_deepspeed(device_type: str):
    """Import DeepSpeed for this device, with the inference-only shm op's JIT build switched off."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device_type == "cuda" else "cpu")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    _clear_stale_build_locks()
    try:
        import deepspeed
    except Exception as e:  # noqa: BLE001 - any import failure is the same one-line answer
        raise SvgapError(f"training.engine deepspeed: import deepspeed failed ({type(e).__name__}: {e})") from None
    # `import deepspeed.comm.torch as m` would bind the torch package itself: take the module object
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    return deepspeed


class DeepSpeedTrainer:
    """One rank. All ranks must be built, trained and closed together (they meet in collectives)."""

    def __init__(self, model_dir: str | Path, cfg: TrainingConfig, device: str = "auto", dtype: str = "float32",
                 seed: int = 0, env: RankEnv | None = None, chat_template: str = "auto",
                 system_prompt: str | None = None) -> None:
        import torch

        from orchestrator.engines.device import resolve_device
        from orchestrator.engines.weights import base_fingerprint

        self.cfg, self.seed, self.env = cfg, seed, env or RankEnv()
        self.device = resolve_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.env.local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.ds = import_deepspeed(self.device.type)
        self.env.export()
        try:
            self.ds.init_distributed(dist_backend="nccl" if self.device.type == "cuda" else "gloo",
                                     auto_mpi_discovery=False, distributed_port=self.env.master_port,
                                     timeout=timedelta(seconds=cfg.deepspeed.timeout_s), verbose=False,
                                     rank=self.env.rank, world_size=self.env.world_size)
        except Exception as e:  # noqa: BLE001
            raise SvgapError(f"training rank {self.env.rank}: torch.distributed group of {self.env.world_size} at "
                             f"{self.env.master_addr}:{self.env.master_port} did not form "
                             f"({type(e).__name__}: {str(e).strip()[:200]})") from None
        # DeepSpeed casts to bf16 itself (training.deepspeed.precision) and keeps fp32 master weights
        self.tokenizer, model = sft.load_policy(model_dir, cfg, self.device, torch.float32, seed)
        self.prompts = PromptFormat.for_model(self.tokenizer, model_dir, chat_template,
                                              system_prompt)  # as the engines read them
        self._fingerprint = base_fingerprint(model)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.micro, self.gas = cfg.deepspeed.micro_and_accumulation(cfg.batch_size, self.env.world_size)
        try:
            self.engine, self.optimizer, _, _ = self.ds.initialize(
                model=model, optimizer=opt, config=ds_config(cfg, self.env.world_size))
        except Exception as e:  # noqa: BLE001 - DeepSpeed's own config checks: one line naming them
            self.close()
            lines = [x.strip() for x in str(e).splitlines() if x.strip() and "errors.pydantic.dev" not in x]
            raise SvgapError(f"training.deepspeed: DeepSpeed rejected the config ({type(e).__name__}: "
                             f"{'; '.join(lines)[:300]})") from None
        self.version = 0

    # ---- training ----
    def _reset_optimizer(self) -> None:
        """AdamW starts fresh every round, as in the torch engine: drop the inner optimizer's moments."""
        inner = self.optimizer
        while hasattr(inner, "optimizer"):
            inner = inner.optimizer
        inner.state.clear()

    def _zero_loss(self, pad: int):
        """A rank with no examples left in a global batch still runs forward/backward (ZeRO-3 gathers, allreduce)."""
        nll, _ = sft.nll_sum(self.engine, [([pad], [pad])], pad, self.device)
        return nll * 0.0

    def train(self, examples: list[TrainingExample], round_t: int) -> tuple[TrainingStats, WeightsUpdate | None]:
        import torch
        import torch.distributed as dist

        if not examples:
            raise SvgapError(f"round {round_t}: no training examples")
        t0 = time.perf_counter()
        sft.seed_round(self.seed, round_t)
        self._reset_optimizer()
        encoded = [sft.encode(self.tokenizer, e, self.prompts) for e in examples]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        k, rank = self.env.world_size, self.env.rank
        self.engine.train()
        losses: list[float] = []
        tokens = 0
        batches = sft.global_batches(len(encoded), self.cfg.batch_size, self.cfg.epochs, self.seed, round_t)
        for step in batches:
            mine = step[rank::k]
            local = torch.zeros(2, dtype=torch.float64)  # summed NLL, tokens of this rank's share
            for m in range(self.gas):
                part = [encoded[i] for i in mine[m * self.micro:(m + 1) * self.micro]]
                if part:
                    nll, n_tok = sft.nll_sum(self.engine, part, pad, self.device)
                    local += torch.tensor([float(nll.detach()), n_tok], dtype=torch.float64)
                    loss = nll * (k * self.gas / len(step))
                else:
                    loss = self._zero_loss(pad)
                self.engine.backward(loss)
                self.engine.step()
            if k > 1:
                dist.all_reduce(local)
            losses.append(float(local[0]) / len(step))
            tokens += int(local[1])
        self.engine.eval()
        self.version = round_t + 1
        stats = TrainingStats(len(examples), sum(e.external for e in examples), tokens, len(losses),
                              losses[0], losses[-1], time.perf_counter() - t0, sft.forwarded_tokens(encoded, batches))
        return stats, self.update()

    # ---- weights ----
    def _gathered(self, modifier_rank=None):
        """ZeRO-3 partitions the weights: gather them (on every rank: a collective) to read or write them whole."""
        import contextlib

        if self.cfg.deepspeed.zero_stage < 3:
            return contextlib.nullcontext()
        return self.ds.zero.GatheredParameters(list(self.engine.module.parameters()), modifier_rank=modifier_rank)

    def update(self) -> WeightsUpdate | None:
        """π at the current version; only rank 0 builds it (the other ranks return None)."""
        with self._gathered():
            return sft.export_update(self.engine.module, self.cfg.mode, self.version) if self.env.rank == 0 else None

    def base_fingerprint(self) -> str:
        return self._fingerprint

    def save(self, directory: str | Path) -> None:
        up = self.update()
        if up is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            up.save(Path(directory) / "update.npz")

    def restore(self, directory: str | Path) -> int:
        """Every rank reads the saved update (shared storage across nodes) and refreshes its fp32 master copy."""
        saved = sft.load_saved(directory)
        with self._gathered(modifier_rank=0):
            sft.load_update(self.engine.module, saved)
        refresh = getattr(self.optimizer, "refresh_fp32_params", None)
        if callable(refresh):
            refresh()
        self.version = saved.version
        return self.version

    def close(self) -> None:
        """Leave the process group so nothing lingers after the actor is killed, and forget DeepSpeed's handles on
        it: the next trainer in this process (a re-formed rank group, a second precision) forms a new group."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        forget_deepspeed_groups()


def forget_deepspeed_groups() -> None:
    """DeepSpeed caches its communication backend (deepspeed.comm.comm.cdb) and the groups it derived from the world
    group (deepspeed.utils.groups) in module globals. After destroy_process_group they name a dead group, and a
    second deepspeed.initialize in the same process failed with "Group ... is not registered" (seen on CUDA bf16 after
    an fp32 trainer, and on CPU with two fp32 trainers)."""
    import sys

    comm = sys.modules.get("deepspeed.comm.comm")
    if comm is not None:
        comm.cdb = None
    groups = sys.modules.get("deepspeed.utils.groups")
    if groups is None:
        return
    for name, value in list(vars(groups).items()):  # _WORLD_GROUP, _DATA_PARALLEL_GROUP, _MPU_..., _EXPERT_... maps
        if not (name[:1] == "_" and name[1:2].isupper()) or isinstance(value, str):  # str: a message constant
            continue
        if isinstance(value, dict):
            value.clear()
        else:
            setattr(groups, name, None)
