"""`model`: the policy pi_0 and the inference engine that samples and judges with it."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from orchestrator.config.fields import Range, Section
from orchestrator.config.registry import ENGINES, Named


class VLLMSection(Section):
    """`model.vllm`: the vLLM engine's own settings (engines/vllm.py). On CPU, vLLM's default of 256 sequences
    a step halves throughput; `kv_cache_mb` sizes the KV cache (vLLM's own CPU default is 4 GiB per engine);
    `threads_bind` is VLLM_CPU_OMP_THREADS_BIND: nobind lets the OS place each engine's threads (auto pins every
    engine of a node to the same cores)."""
    max_num_seqs: Annotated[int, Range(1)] = Field(2048, description="sequences per engine step")
    max_num_batched_tokens: Annotated[int, Range(1)] = Field(32768, description="tokens per engine step")
    kv_cache_mb: Annotated[int, Range(16)] = Field(256, description="KV cache per engine, MiB")
    max_lora_rank: Annotated[int, Range(1)] = Field(16, description="largest LoRA rank the engine loads")
    max_model_len: Annotated[int | None, Range(16)] = Field(
        None, description="context length of the engine; null: the task's longest prompt or query + "
                          "max_new_tokens (engines/vllm_sizing.py)")
    enforce_eager: bool = Field(True, description="compiled mode starts 3-4x slower here and is no faster for "
                                                  "this model size")
    threads_bind: str = Field("nobind", description="VLLM_CPU_OMP_THREADS_BIND")
    prefix_caching: bool = Field(True, description="automatic prefix caching: a problem's candidates (and every "
                                                   "query's system turn) reuse the KV blocks of their shared prompt "
                                                   "in verification and teacher-forced scoring")
    block_size: Annotated[int | None, Range(16)] = Field(
        None, description="tokens per KV block, the prefix cache's granularity; null: 32 on CPU (vLLM's CPU "
                          "default 128 is longer than most prompts: nothing would be reused), the engine's own on GPU")
    lora_mode: Literal["auto", "request", "merge"] = Field(
        "auto", description="request: one LoRARequest per version; merge: W0 + scaling * B @ A reloaded as full "
                            "weights (on CPU vLLM's LoRA kernels made a round's verification 6x slower; merge costs "
                            "one in-place reload per round); auto: request on CUDA, merge on CPU")


class ModelConfig(Section):
    """The policy pi_0: the workload's locally built base model unless `path` names a saved HF model."""
    path: str | None = Field(None, description="a saved HF model folder (null: the workload builds its own)")
    cache_dir: str = Field("~/.cache/svgap", description="where built base models are cached")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when the actor has a GPU")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="weights and activations")
    engine: Annotated[str, Named(ENGINES, available=True)] = Field("hf", description="inference engine of the generation and verification actors (engine "
                                          "registry, config/registry.py): hf is the reference")
    vllm: VLLMSection = Field(default_factory=VLLMSection)
    chat_template: Literal["auto", "none"] = Field(
        "auto", description="auto: prompts and verifier queries go through the model folder's chat template when "
                            "it has one; none: plain text always (engines/chat.py)")
    system_prompt: str | None = Field(
        None, description="the system turn opening every conversation: null = the workload's own (chat_arithmetic "
                          "has one), else the template's behaviour; \"template\" = the template's behaviour always; "
                          "any other text = that system turn")
