"""Typed experiment config: YAML in, `--set a.b=c` overrides, strict validation, YAML out.

The resolved config is saved with every run and is enough to rerun it (``load(save(cfg)) == cfg``).
"""
from __future__ import annotations

import copy
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from orchestrator.errors import SvgapError
from orchestrator.config.typed import ConfigError, from_dict, rng, to_dict

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "arithmetic.yaml"


@dataclass
class WorkloadConfig:
    """Which task, how many prompts per round, and the task's own options (validated by the workload)."""
    name: str = "arithmetic"
    train_prompts: int = field(default=256, metadata=rng(1))
    heldout_prompts: int = field(default=500, metadata=rng(1))
    # samples per held-out prompt: heldout_acc is their mean (more samples, a tighter paired test between rounds)
    heldout_samples: int = field(default=1, metadata=rng(1))
    options: dict = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        from workloads import options_type  # local: keeps config importable without torch

        p = f"{prefix}.options" if prefix else "options"
        self.options = to_dict(from_dict(options_type(self.name, prefix), self.options, p))


@dataclass
class VLLMSection:
    """`model.vllm`: the vLLM engine's own settings (engines/vllm.py). On CPU, vLLM's default of 256 sequences
    a step halves throughput; `kv_cache_mb` sizes the KV cache (vLLM's own CPU default is 4 GiB per engine);
    `threads_bind` is VLLM_CPU_OMP_THREADS_BIND: nobind lets the OS place each engine's threads (auto pins every
    engine of a node to the same cores)."""
    max_num_seqs: int = field(default=2048, metadata=rng(1))
    max_num_batched_tokens: int = field(default=32768, metadata=rng(1))
    kv_cache_mb: int = field(default=256, metadata=rng(16))
    max_lora_rank: int = field(default=16, metadata=rng(1))
    # context length of the engine; null: the task's longest prompt or query + max_new_tokens (engines/vllm_sizing.py)
    max_model_len: int | None = field(default=None, metadata=rng(16))
    enforce_eager: bool = True  # compiled mode starts 3-4x slower here and is no faster for this model size
    threads_bind: str = "nobind"
    # request: one LoRARequest per version; merge: W0 + scaling * B @ A reloaded as full weights (on CPU vLLM's LoRA
    # kernels made a round's verification 6x slower; merge costs one in-place reload per round); auto: request on
    # CUDA, merge on CPU
    lora_mode: Literal["auto", "request", "merge"] = "auto"


@dataclass
class ModelConfig:
    """The policy π_0: the workload's locally built base model unless `path` names a saved HF model."""
    path: str | None = None
    cache_dir: str = "~/.cache/svgap"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # inference engine of the generation and verification actors (engines/registry.py): hf is the reference
    engine: Literal["hf", "vllm"] = "hf"
    vllm: VLLMSection = field(default_factory=VLLMSection)
    # auto: prompts and verifier queries go through the model folder's chat template when it has one; none: plain
    # text always (engines/chat.py)
    chat_template: Literal["auto", "none"] = "auto"
    # the system turn opening every conversation: null = the workload's own (chat_arithmetic has one), else the
    # template's behaviour; "template" = the template's behaviour always; any other text = that system turn
    system_prompt: str | None = None

    def validate(self, prefix: str) -> None:
        from orchestrator.engines.registry import check_available  # light: finds packages, imports none

        try:
            check_available(self.engine)
        except SvgapError as e:
            raise ConfigError(str(e).replace("model.engine", f"{prefix}.engine" if prefix else "engine", 1)) from None


@dataclass
class GenerationConfig:
    n: int = field(default=8, metadata=rng(1))
    temperature: float = field(default=1.0, metadata=rng(0.0, 10.0, lo_open=True))
    max_new_tokens: int = field(default=8, metadata=rng(1))
    batch_size: int = field(default=512, metadata=rng(1))


@dataclass
class VerificationConfig:
    """The model judges its own candidates (docs/theory.md §1) and, with `uncertainty: scored`, also measures their
    uncertainty U = -log π_t(y|x) by a teacher-forced pass -- independent of the sampling engine's kernels and
    precision. `sampled` takes U from the generation engine's logprobs instead (free; with the HF engine in
    float32 the two agree to 1e-4, and each round logs `U_s_sampled` next to U_s so any difference shows)."""
    method: Literal["tf", "qe"] = "tf"
    threshold: float = field(default=0.5, metadata=rng(0.0, 1.0))
    batch_size: int = field(default=512, metadata=rng(1))
    uncertainty: Literal["scored", "sampled"] = "scored"


@dataclass
class DeepSpeedSection:
    """`training.deepspeed`: how the DeepSpeed engine trains (trainers/deepspeed.py). The global batch is
    training.batch_size whatever the number of ranks K: micro_batch x accumulation x K = batch_size, with the
    accumulation derived (micro_batch null = batch_size / K, no accumulation). `ds_config` is merged last over the
    DeepSpeed config svgap builds, for experts (DeepSpeed itself judges it when the ranks start)."""
    zero_stage: int = field(default=2, metadata=rng(0, 3))
    micro_batch: int | None = field(default=None, metadata=rng(1))
    gradient_clipping: float = field(default=1.0, metadata=rng(0.0))  # max global grad norm; 0 = off
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: bf16 weights/activations, fp32 master weights
    offload_optimizer: bool = False  # optimizer states in CPU memory (ZeRO 1-3)
    timeout_s: float = field(default=300.0, metadata=rng(0.0, lo_open=True))  # a lost peer: error, not a hang
    ds_config: dict = field(default_factory=dict)

    def micro_and_accumulation(self, batch_size: int, ranks: int, prefix: str = "training") -> tuple[int, int]:
        """(micro-batch per rank, gradient accumulation steps) giving the global batch `batch_size` on K ranks."""
        micro = self.micro_batch or batch_size // ranks
        if micro < 1 or batch_size % (micro * ranks):
            how = (f"micro_batch {self.micro_batch} x {ranks} ranks" if self.micro_batch
                   else f"{ranks} ranks")
            raise ConfigError(f"{prefix}.batch_size: {batch_size} is not a multiple of {how}; the global batch "
                              f"must split evenly (set training.deepspeed.micro_batch or training.batch_size)")
        return micro, batch_size // (micro * ranks)

    def validate(self, prefix: str) -> None:
        if self.offload_optimizer and self.zero_stage == 0:
            raise ConfigError(f"{prefix}.offload_optimizer: needs zero_stage 1, 2 or 3 (got 0)")


@dataclass
class TrainingConfig:
    """LoRA SFT on the BoN picks; the loss is U_v(t) itself (docs/theory.md §1)."""
    lora_rank: int = field(default=8, metadata=rng(1))
    lora_alpha: float = field(default=16.0, metadata=rng(0.0, lo_open=True))
    lora_dropout: float = field(default=0.0, metadata=rng(0.0, 1.0))
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                "gate_proj", "up_proj", "down_proj"])
    # null: 2e-3 with LoRA, 3e-4 with full fine-tuning (every weight moves; 2e-3 diverged here) -- see learning_rate
    lr: float | None = field(default=None, metadata=rng(0.0, 1.0, lo_open=True))
    epochs: int = field(default=2, metadata=rng(1))
    batch_size: int = field(default=32, metadata=rng(1))
    weight_decay: float = field(default=0.0, metadata=rng(0.0))
    # trainer (trainers/base.py registry): torch = one process; deepspeed = a data-parallel ZeRO group of
    # resources.training.actors ranks
    engine: Literal["torch", "deepspeed"] = "torch"
    # lora publishes an adapter per round; full fine-tunes every weight and publishes the full weights
    mode: Literal["lora", "full"] = "lora"
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)

    LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules")
    DEFAULT_LR = {"lora": 2e-3, "full": 3e-4}

    @property
    def learning_rate(self) -> float:
        """`lr`, or the mode's default when it is null."""
        return self.lr if self.lr is not None else self.DEFAULT_LR[self.mode]

    def validate(self, prefix: str) -> None:
        if self.engine != "deepspeed" and self.deepspeed != DeepSpeedSection():
            raise ConfigError(f"{prefix}.deepspeed: set, but training.engine is {self.engine} (the section configures "
                              f"the deepspeed engine only)")
        if self.mode == "full":
            for name in self.LORA_ONLY:
                f = self.__dataclass_fields__[name]
                dflt = f.default_factory() if f.default_factory is not MISSING else f.default
                if getattr(self, name) != dflt:
                    raise ConfigError(f"{prefix}.{name}: a LoRA option, but training.mode is full (every weight "
                                      f"is trained); remove it or use training.mode lora")


@dataclass
class PoolResources:
    """One role's actors: how many and what each asks Ray for (fractions allowed).

    `threads` (torch intra-op threads per actor) defaults to the whole CPUs reserved, at least 1: on CPU,
    oversubscribed torch threads spin against each other and run tens of times slower (measured here: a
    forward pass went from 14 ms with 1 thread to 950 ms with 2 threads beside one busy process)."""
    actors: int = field(default=1, metadata=rng(1))
    cpus: float = field(default=1.0, metadata=rng(0.0))
    gpus: float = field(default=0.0, metadata=rng(0.0))
    threads: int | None = field(default=None, metadata=rng(1))
    # custom Ray resources each actor asks for, e.g. {gen_node: 1}: lands the role on the nodes that advertise them
    # (cluster/ray-cluster.yaml, cluster/local.sh, KubeRay rayStartParams.resources)
    custom: dict = field(default_factory=dict)

    def validate(self, prefix: str) -> None:
        if self.cpus + self.gpus <= 0:
            raise ConfigError(f"{prefix}: cpus and gpus are both 0; each actor needs some CPU or GPU to be placed")
        for name, amount in self.custom.items():
            key = f"{prefix}.custom.{name}"
            if not isinstance(name, str) or not name or name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ConfigError(f"{key}: not a custom resource name (CPU and GPU are set by cpus / gpus)")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount <= 0:
                raise ConfigError(f"{key}: expected a number > 0, got {amount!r}")
        self.custom = {k: float(v) for k, v in self.custom.items()}


@dataclass
class ResourcesConfig:
    generation: PoolResources = field(default_factory=lambda: PoolResources(actors=2, cpus=0.5))
    verification: PoolResources = field(default_factory=lambda: PoolResources(actors=1, cpus=0.5))
    training: PoolResources = field(default_factory=lambda: PoolResources(actors=1, cpus=0.5))
    placement: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    timeout_s: float = field(default=600.0, metadata=rng(0.0, lo_open=True))
    # a stage that loses an actor (OOM, node gone) replaces it and sends its shard again, up to this many times
    # per stage; one more loss stops the run naming the role, actor, node and cause (roles/calls.py)
    retries: int = field(default=3, metadata=rng(0))
    # Training never runs while generation/verification do (a round measures, then trains), so on a cluster too
    # small for its own CPUs the training actors may share the generation pool's bundles (ray_session.py).
    # auto: only when the separate pool would not fit; never: always its own bundles; always: always share.
    colocate_training: Literal["auto", "never", "always"] = "auto"

    def validate(self, prefix: str) -> None:
        if self.colocate_training == "always" and self.training.gpus > 0:
            raise ConfigError(f"{prefix + '.' if prefix else ''}colocate_training: always shares CPU bundles only; "
                              f"with resources.training.gpus > 0 give training its own bundles (never/auto)")
        if self.colocate_training == "always" and self.training.actors > self.generation.actors:
            raise ConfigError(f"{prefix + '.' if prefix else ''}colocate_training: always puts one training actor on "
                              f"each generation bundle at most; {self.training.actors} training actors > "
                              f"{self.generation.actors} generation actors")


@dataclass
class TrackingConfig:
    """MLflow: `uri` null means $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    uri: str | None = None
    experiment: str = "svgap"
    run_name: str | None = None
    out_dir: str = "runs"


@dataclass
class FitConfig:
    """Online fit of the gap dynamics (docs/theory.md §2) after every round from `min_rounds` records on."""
    online: bool = True
    min_rounds: int = field(default=4, metadata=rng(4))
    quantity: Literal["total", "per_token"] = "total"
    eps: float = field(default=0.05, metadata=rng(0.0, lo_open=True))


@dataclass
class StopConfig:
    """Optional early stop: end the run when the predicted remaining gain U_s(t) - U_s,inf < this."""
    when_predicted_gain_below: float | None = field(default=None, metadata=rng(0.0, lo_open=True))


@dataclass
class ExternalConfig:
    """A limited budget of external data spread over rounds (docs/theory.md §5)."""
    budget: int = field(default=0, metadata=rng(0))
    strategy: Literal["none", "early", "uniform", "late", "explicit", "planned"] = "none"
    shares: list[float] | None = None
    source: str = "workload"
    gamma: float | None = field(default=None, metadata=rng(0.0, lo_open=True))
    warmup_rounds: int = field(default=4, metadata=rng(0))
    objective: Literal["limit", "horizon"] = "limit"


@dataclass
class ExperimentConfig:
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verification: VerificationConfig = field(default_factory=VerificationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    rounds: int = field(default=8, metadata=rng(1))
    seed: int = 0
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    external: ExternalConfig = field(default_factory=ExternalConfig)
    judge: JudgeConfig | None = None  # a separate verifier model and its pool (config/roles.py); null: self-verify

    def validate(self, prefix: str = "") -> None:
        self.workload.validate("workload")  # also when the section was absent: resolve the workload's options
        if self.model.engine == "vllm" and self.training.mode == "lora" \
                and self.training.lora_rank > self.model.vllm.max_lora_rank:
            raise ConfigError(f"model.vllm.max_lora_rank: {self.model.vllm.max_lora_rank} is below "
                              f"training.lora_rank {self.training.lora_rank}; the vLLM engine could not load the "
                              f"adapters")
        ranks = self.resources.training.actors
        if self.training.engine == "torch" and ranks != 1:
            raise ConfigError(f"resources.training.actors: {ranks} ranks need training.engine deepspeed (the torch "
                              f"engine trains in one process)")
        if self.training.engine == "deepspeed":
            self.training.deepspeed.micro_and_accumulation(self.training.batch_size, ranks)
        ext = self.external
        if ext.strategy == "explicit":
            if ext.shares is None:
                raise ConfigError("external.shares: required when external.strategy is explicit")
        if ext.shares is not None:
            if len(ext.shares) != self.rounds:
                raise ConfigError(f"external.shares: has {len(ext.shares)} entries, expected one per training "
                                  f"round ({self.rounds})")
            if any(s < 0 for s in ext.shares) or abs(sum(ext.shares) - 1.0) > 1e-6:
                raise ConfigError(f"external.shares: must be non-negative and sum to 1 (sum is {sum(ext.shares):g})")
        if ext.strategy != "none" and ext.budget < 1:
            raise ConfigError(f"external.budget: must be >= 1 with external.strategy {ext.strategy}")


def _parse_scalar(text: str) -> Any:
    """`--set` values are YAML scalars/flow lists: 8, 0.5, true, null, [a, b]."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b=c` overrides to a raw config mapping (before validation, so errors name the key)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. generation.n=8")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key part")
        set_key(data, parts, _parse_scalar(raw), f"--set {key}")
    return data


def set_key(data: dict, parts: list[str], value: Any, what: str) -> None:
    """data[a][b]... = value for the dotted key's parts, creating missing sections (overrides and sweep grids)."""
    node = data
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{what}: {p} is not a section")
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    if p.is_dir():
        raise ConfigError(f"config path is a directory, not a file: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: top level must be a mapping of sections")
    return data


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """YAML file (default: configs/arithmetic.yaml) + overrides -> validated ExperimentConfig.

    The default file restates the dataclass defaults (a test keeps them equal), so an installed package without
    the source tree's configs/ folder still has the default experiment."""
    if path is None and not DEFAULT_CONFIG.is_file():
        data: dict = {}
    else:
        data = read_yaml(path or DEFAULT_CONFIG)
    return from_mapping(apply_overrides(data, overrides or []))


def from_mapping(data: dict) -> ExperimentConfig:
    return from_dict(ExperimentConfig, data)


def dump(cfg: ExperimentConfig) -> str:
    """Resolved config as YAML text; `from_mapping(yaml.safe_load(dump(c))) == c`."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


from orchestrator.config.roles import JudgeConfig  # noqa: E402 - builds on PoolResources above
