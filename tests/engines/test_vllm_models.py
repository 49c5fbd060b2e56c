"""The vLLM engine on a model other than the arithmetic one: a Llama architecture built locally with random weights,
a BPE tokenizer with a ChatML chat template, two end-of-sequence ids and a stop string (tests/tiny_hf.py). Its
head_dim 12 has no vLLM CPU kernel, so this also runs the exact widening with grouped KV heads (4 query heads, 2
KV heads). Held to the HF engine on the same folder: prompts through the template, teacher-forced logprobs, TF and
QE scores with words that share a leading token, and sampling that ends at the model's stop ids and stop string."""
from __future__ import annotations

import os
import sys

import pytest

from extras import require  # noqa: E402 - tests/ is on sys.path (pytest rootdir-relative import)
require("vllm")
import ray  # noqa: E402

from orchestrator.config import PoolResources  # noqa: E402
from orchestrator.roles.group import ActorGroup, PoolSpec  # noqa: E402
from workloads.base import QEQuery, TFQuery  # noqa: E402

pytestmark = [pytest.mark.vllm]

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-4
STOP = "####"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import tiny_hf

    return tiny_hf.build(tmp_path_factory.mktemp("llama") / "model", "llama", chat=True, seed=1,
                         stop_strings=[STOP])


@pytest.fixture(scope="module")
def engine(local_ray, model_dir):
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.worker import WorkerSpec
    from ray_helpers import EngineWorker

    spec = WorkerSpec("generation", ModelSource("gsm8k", {}, str(model_dir), "unused", "auto"), "cpu", "float32",
                      1.0, 1, "vllm", {"lora": False, "kv_cache_mb": 64})
    g = ActorGroup(PoolSpec("generation", PoolResources(actors=1, cpus=1.0), "PACK", 300.0), EngineWorker, spec)
    g.call_all("start", "version")
    yield g
    g.shutdown()


@pytest.fixture(scope="module")
def hf(model_dir):
    from orchestrator.engines.hf import HFBackend

    return HFBackend(model_dir, device="cpu", threads=1, chat_template="auto")


PROMPTS = ["Tom has 3 apples and buys 4 more. How many apples?", "What is 12 times 3?",
           "A train goes 60 miles in 2 hours. Speed?"]


def test_chat_template_teacher_forcing_and_verifier_words_equal_hf(engine, hf):
    samples = engine.call_one("generate", "sample", [(p, 7 + i) for i, p in enumerate(PROMPTS)], 0, 4, 1.0, 24,
                              64)
    pairs = [(p, s) for p, row in zip(PROMPTS, samples) for s in row]
    assert len(pairs) == 12
    # sampled logprobs are the policy's: the HF engine's teacher forcing through the same chat template
    ref = hf.score([p for p, _ in pairs], [s.token_ids for _, s in pairs])
    for (_, s), r in zip(pairs, ref):
        assert max(abs(-a - b) for a, b in zip(s.logprobs, r.token_nll)) < TOL
    ours = engine.call_one("verify", "uncertainty", [(p, s.token_ids) for p, s in pairs], 0, 64)
    assert max(abs(a - r.nll) for a, r in zip(ours, ref)) < TOL * 8
    # " True" / " False" share their leading space piece with this tokenizer: read after it, as the HF engine does
    tf = [TFQuery(segments=(f"Question: {p}\nAnswer: {s.text}\nIs the answer correct?", "\nAnd complete?"),
                  true_token=" True", false_token=" False") for p, s in pairs]
    assert max(abs(a - b) for a, b in zip(engine.call_one("verify", "score", tf, 0, "tf", 64), hf.tf_score(tf))) < TOL
    qe = [QEQuery(text=f"Question: {p}\nAnswer: {s.text}\nGrade:", grade_tokens=(" 1", " 2", " 3"))
          for p, s in pairs]
    assert max(abs(a - b) for a, b in zip(engine.call_one("verify", "score", qe, 0, "qe", 64), hf.qe_score(qe))) < TOL


def test_sampling_ends_at_the_models_stop_ids_and_stop_string(engine, hf):
    samples = engine.call_one("generate", "sample", [(p, 100 + i) for i, p in enumerate(PROMPTS * 8)], 0, 8, 1.5,
                              48, 64)
    flat = [s for row in samples for s in row]
    ended = [s for s in flat if s.finished]
    assert ended, "no candidate ended within 48 tokens"
    for s in flat:
        assert s.length == len(s.logprobs) <= 48
        hit_stop_id = bool(s.token_ids) and s.token_ids[-1] in hf.stop_ids
        hit_string = STOP in hf.tokenizer.decode(s.token_ids)
        assert s.finished == (hit_stop_id or hit_string), s
        if s.finished and not hit_stop_id:  # cut right after the token that completes the stop string
            assert STOP not in hf.tokenizer.decode(s.token_ids[:-1])
        assert not any(t in hf.stop_ids for t in s.token_ids[:-1])
