"""Runs inside vLLM's worker process (LLM(worker_extension_cls=...)): full weights reloaded in place, then every
CPU-packed copy of a weight that vLLM keeps beside it rebuilt.

Why: on CPU, vLLM packs weights for its GEMM kernels when a model loads. `reload_weights` repacks the linear
layers, but the embedding's packed copy that a tied lm_head computes the logits with stays the old one (measured:
logprobs 0.06 off after a full update of the arithmetic model; exact after this refresh)."""
from __future__ import annotations


class SvgapWorkerExtension:
    def svgap_reload(self, weights_path: str) -> int:
        """Reload every weight from a safetensors folder; returns how many packed copies were rebuilt."""
        self.reload_weights(weights_path=weights_path)  # type: ignore[attr-defined]
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return 0
        from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm

        rebuilt = 0
        for module in self.model_runner.get_model().modules():  # type: ignore[attr-defined]
            weight = getattr(module, "weight", None)
            if hasattr(module, "cpu_linear") and weight is not None and weight.ndim == 2 and weight.numel() > 0:
                dispatch_cpu_unquantized_gemm(module, remove_weight=False)  # kept weights: the packed copy is stale
                rebuilt += 1
        return rebuilt
