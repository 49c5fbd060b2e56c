"""The vLLM engine in a real Ray actor against the HF reference on the same weights: teacher-forced logprobs, TF/QE
scores, sampled logprobs, LoRA versions, full weights, stale versions, fingerprint; no engine process outlives it.

vLLM's CPU attention has no kernel for head_dim 16 (the default arithmetic model), so these tests use the default
model's weights read with 2 attention heads (head_dim 32): a different but real model, built in a second, that
both engines load from the same folder. One engine for the whole module (a start costs 20-50 s here)."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time

import numpy as np
import pytest

from extras import require  # noqa: E402 - tests/ is on sys.path (pytest rootdir-relative import)
require("vllm")
import psutil  # noqa: E402 - with ray[default]: a hard dependency
import ray  # noqa: E402 - a hard dependency

from orchestrator.config import PoolResources, TrainingConfig  # noqa: E402
from orchestrator.errors import SvgapError  # noqa: E402
from orchestrator.roles.group import ActorGroup, PoolSpec, StageError  # noqa: E402
from orchestrator.engines.weights import AdapterUpdate, FullUpdate  # noqa: E402

pytestmark = [pytest.mark.vllm]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-4  # float32, measured differences are 3e-5 and below


def unwidenable_copy(src, dst):
    """The default model with partial rotary embeddings declared: no exact wider model exists for vLLM's CPU
    kernels (the HF engine would still run it)."""
    shutil.copytree(src, dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(partial_rotary_factor=0.5)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def model_dir(base_model_dir):
    return base_model_dir


@pytest.fixture(scope="module")
def train_cfg():
    return TrainingConfig(epochs=1, batch_size=16)


@pytest.fixture(scope="module")
def engine(local_ray, model_dir, train_cfg):
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.worker import WorkerSpec
    from ray_helpers import EngineWorker

    # LoRARequests (lora_mode auto would merge on CPU; the merge is tested below)
    opts = {"lora": True, "lora_mode": "request", "lora_target_modules": list(train_cfg.target_modules),
            "kv_cache_mb": 128}
    spec = WorkerSpec("generation", ModelSource("arithmetic", {}, str(model_dir), "unused"), "cpu", "float32", 1.0,
                      1, "vllm", opts)
    g = ActorGroup(PoolSpec("generation", PoolResources(actors=1, cpus=1.0), "PACK", 300.0), EngineWorker, spec)
    g.call_all("start", "version")
    yield g
    g.shutdown()


@pytest.fixture(scope="module")
def hf(model_dir):
    from orchestrator.engines.hf import HFBackend

    return HFBackend(model_dir, device="cpu", threads=1)


@pytest.fixture(scope="module")
def problems(default_workload):
    return default_workload.problems("train", 256, seed=5)


@pytest.fixture(scope="module")
def vllm_samples(engine, problems):
    items = [(p.prompt, 1000 + i) for i, p in enumerate(problems)]
    return engine.call_one("generate", "sample", items, 0, 8, 1.0, 8, 512)


def flat(problems, samples):
    return [(p, s) for p, row in zip(problems, samples) for s in row]


def test_fingerprint_equals_the_hf_engines(engine, hf):
    assert engine.call_one("start", "base_fingerprint") == hf.base_fingerprint()


def test_teacher_forced_and_sampled_logprobs_equal_hf(engine, hf, problems, vllm_samples):
    pairs = flat(problems, vllm_samples)
    assert len(pairs) == 2048
    assert all(s.finished == (s.token_ids[-1] == hf.eos_id) and len(s.logprobs) == s.length for _, s in pairs)
    items = [(None, p.prompt, s.token_ids) for p, s in pairs[:512]]
    ours = engine.call_one("verify", "uncertainty", [(p, r) for _, p, r in items], 0, 512)
    ref = hf.score([p for _, p, _ in items], [r for _, _, r in items])
    # per token: vLLM's prompt_logprobs vs HF's teacher forcing; and vLLM's own sampled logprobs vs both
    sampled = [np.array(s.logprobs) for _, s in pairs[:512]]
    assert max(abs(a - b.nll) for a, b in zip(ours, ref)) < TOL * 8
    assert max(float(np.max(np.abs(-lp - np.array(r.token_nll)))) for lp, r in zip(sampled, ref)) < TOL


def test_tf_and_qe_scores_equal_hf(engine, hf, problems, vllm_samples, default_workload):
    pairs = flat(problems, vllm_samples)[:512]
    for method, make in (("tf", default_workload.tf_query), ("qe", default_workload.qe_query)):
        queries = [make(p, s.text) for p, s in pairs]
        ours = engine.call_one("verify", "score", queries, 0, method, 512)
        ref = hf.tf_score(queries) if method == "tf" else hf.qe_score(queries)
        assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL, method
    # the fused call returns the same numbers as the two separate ones
    queries = [default_workload.tf_query(p, s.text) for p, s in pairs[:64]]
    fused = engine.call_one("verify", "verify", [(q, p.prompt, s.token_ids) for q, (p, s) in zip(queries, pairs)],
                            0, "tf", True, 512)
    assert max(abs(a - b) for (a, _), b in zip(fused, hf.tf_score(queries))) < TOL
    ref_u = hf.score([p.prompt for p, _ in pairs[:64]], [s.token_ids for _, s in pairs[:64]])
    assert max(abs(u - r.nll) for (_, u), r in zip(fused, ref_u)) < TOL * 8


def test_prefix_reuse_gives_the_scores_of_whole_rows(engine, problems, vllm_samples, default_workload):
    """Teacher forcing that reads a problem's prompt from the prefix cache gives what whole rows give, also for
    repeated candidates and candidates sharing their first tokens (their cache hit may reach into the response:
    scored again without reuse), while computing fewer tokens."""
    long = "".join(p.prompt for p in problems[:5])  # 41 tokens: a KV block of 32 shared (the model's context: 64)
    pairs = flat(problems, vllm_samples)[:48]
    items = [(default_workload.tf_query(p, s.text), long + p.prompt, s.token_ids) for p, s in pairs]
    items += items[:4] + [(q, pr, ids[:1] + [ids[0]] * 5) for q, pr, ids in items[:3]]  # repeats, shared starts

    def run(reuse: bool):
        engine.call_one("start", "engine_attr", "prefix_caching", reuse)
        before = engine.call_one("start", "engine_attr", "verify_tokens")
        out = engine.call_one("verify", "verify", items, 0, "tf", True, 512)
        after = engine.call_one("start", "engine_attr", "verify_tokens")
        return out, after["computed"] - before["computed"]

    try:
        whole, whole_work = run(False)
        reused, reused_work = run(True)
    finally:
        engine.call_one("start", "engine_attr", "prefix_caching", True)
    assert max(abs(a[0] - b[0]) for a, b in zip(whole, reused)) < TOL
    assert max(abs(a[1] - b[1]) for a, b in zip(whole, reused)) < TOL * 8
    assert reused_work < 0.8 * whole_work  # the judgment requests read the cache in both (measured: 0.72)


def test_sampled_accuracy_and_uncertainty_match_hf_within_noise(hf, problems, vllm_samples, default_workload):
    """Different random numbers, same distribution: 2048 candidates each, compared by their standard errors."""
    hf_samples = hf.sample([p.prompt for p in problems], 8, 1.0, 8, seeds=list(range(len(problems))))
    stats = []
    for samples in (vllm_samples, hf_samples):
        pairs = flat(problems, samples)
        acc = np.array([default_workload.check(p, s.text) for p, s in pairs], float)
        u = np.array([s.nll for _, s in pairs])
        stats.append((acc, u))
    for k, name in ((0, "accuracy"), (1, "U_s")):
        a, b = stats[0][k], stats[1][k]
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se + 1e-9, \
            f"{name}: vLLM {a.mean():.4f} vs HF {b.mean():.4f} (se {se:.4f})"


def test_lora_versions_equal_hf_merged_and_stale_versions_are_refused(engine, hf, problems, vllm_samples,
                                                                      model_dir, train_cfg, default_workload):
    from orchestrator.trainers.lora import LoRATrainer, TrainingExample

    trainer = LoRATrainer(model_dir, train_cfg, device="cpu", seed=3)
    pairs = flat(problems, vllm_samples)[:128]  # LoRA kernels are slow on CPU
    queries = [default_workload.tf_query(p, s.text) for p, s in pairs]
    for t in range(2):  # two versions: a new adapter must replace the old one (a reused LoRA id would not)
        trainer.train([TrainingExample(p.prompt, response_text=default_workload.reference(p))
                       for p in problems[64 * t: 64 * (t + 1)]], t)
        update = trainer.adapter()
        assert engine.call_all("sync", "load_weights", update) == [t + 1]
        hf.load_weights(update)
        ours = engine.call_one("verify", "uncertainty", [(p.prompt, s.token_ids) for p, s in pairs], t + 1, 512)
        ref = hf.score([p.prompt for p, _ in pairs], [s.token_ids for _, s in pairs])
        assert max(abs(a - b.nll) for a, b in zip(ours, ref)) < TOL * 8
        tf = engine.call_one("verify", "score", queries, t + 1, "tf", 512)
        assert max(abs(a - b) for a, b in zip(tf, hf.tf_score(queries))) < TOL
    with pytest.raises(StageError, match=r"holds model version 2 but was asked to work with version 1; refusing"):
        engine.call_one("generate", "sample", [(problems[0].prompt, 1)], 1, 2, 1.0, 8, 64)


def test_full_weights_load_in_place(engine, hf, problems, vllm_samples):
    """A FullUpdate (full fine-tuning's result) replaces every weight: here π_0's weights, each scaled by 1.01."""
    import torch
    from transformers import AutoModelForCausalLM

    ref_model = AutoModelForCausalLM.from_pretrained(hf.model.name_or_path, dtype=torch.float32)
    tensors = {k: (v.float().numpy() * 1.01).astype(np.float32) for k, v in ref_model.state_dict().items()
               if k != "lm_head.weight"}
    with torch.no_grad():
        for k, v in ref_model.state_dict().items():
            v.copy_(torch.from_numpy(tensors.get(k, tensors["model.embed_tokens.weight"])))
    assert engine.call_all("sync", "load_weights", FullUpdate(3, tensors)) == [3]
    pairs = flat(problems, vllm_samples)[:128]
    ours = engine.call_one("verify", "uncertainty", [(p.prompt, s.token_ids) for p, s in pairs], 3, 512)
    ids = [hf.encode(p.prompt) + list(s.token_ids) for p, s in pairs]
    with torch.no_grad():
        ref = []
        for (p, s), row in zip(pairs, ids):
            logp = torch.log_softmax(ref_model(torch.tensor([row])).logits[0].float(), -1)
            start = len(row) - len(s.token_ids)
            ref.append(-float(sum(logp[k - 1, row[k]] for k in range(start, len(row)))))
    assert max(abs(a - b) for a, b in zip(ours, ref)) < TOL * 8
    assert max(abs(a - s.nll) for a, (_, s) in zip(ours, pairs)) > 1e-2  # the weights did change


def test_merged_adapter_weights_equal_the_hf_engines_merge(model_dir, train_cfg, problems, default_workload):
    """lora_mode merge hands vLLM W0 + scaling * B @ A as full weights (loaded like a FullUpdate, tested above):
    the same weights the HF engine merges in place."""
    import torch

    from orchestrator.engines.hf import HFBackend
    from orchestrator.trainers.lora import LoRATrainer, TrainingExample
    from orchestrator.engines.vllm import VLLMBackend

    trainer = LoRATrainer(model_dir, train_cfg, device="cpu", seed=4)
    trainer.train([TrainingExample(p.prompt, response_text=default_workload.reference(p)) for p in problems[:32]], 0)
    update = trainer.adapter()
    merger = object.__new__(VLLMBackend)  # only the merge: no engine needed
    merger.path = model_dir
    merged = merger._merged(update)
    ref = HFBackend(model_dir, device="cpu", threads=1)
    ref.load_weights(update)
    params = dict(ref.model.named_parameters())
    assert merged.version == 1 and set(merged.tensors) == set(params)
    diff = max(float(torch.max(torch.abs(torch.from_numpy(merged.tensors[k]) - p.detach()))) for k, p in params.items())
    assert diff < 1e-6
    assert any(float(np.max(np.abs(merged.tensors[f"{k}.weight"] - merger._base[f"{k}.weight"]))) > 1e-4
               for k in update.tensors)


def test_unsupported_head_dim_is_a_named_error(base_model_dir, tmp_path):
    from orchestrator.engines.vllm import VLLMBackend

    with pytest.raises(SvgapError, match=r"head_dim 16, and it cannot be widened exactly .*partial rotary"):
        VLLMBackend(unwidenable_copy(base_model_dir, tmp_path / "model"), device="cpu")


def test_no_engine_process_outlives_a_killed_actor(engine):
    """Last in the module: the actor dies by SIGKILL (as a lost actor does, never closed), and its engine core and
    worker still end (vllm_reaper.py); a pool's own close is checked by test_vllm_run.py's run."""
    import signal

    pids = engine.call_one("start", "engine_pids")
    if not pids:  # say what the actor's process tree held instead
        actor = psutil.Process(engine.call_one("start", "pid"))
        pytest.fail(f"no engine pid recorded; the actor's children: "
                    f"{[(c.pid, c.name(), c.cmdline()[:2]) for c in actor.children(recursive=True)]}")
    assert all(psutil.pid_exists(p) for p in pids)
    actor_pid = next(psutil.Process(p).ppid() for p in pids if psutil.Process(p).ppid() not in pids)
    assert "VLLM" not in psutil.Process(actor_pid).name()
    os.kill(actor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    engine.shutdown()
    assert not alive, f"vLLM engine processes still running after their actor was killed: {alive}"
