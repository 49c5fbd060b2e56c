"""The HF backend on the real default base model: sampling, teacher-forced scoring, TF and QE scores."""
from __future__ import annotations

import math

import pytest
import torch

from orchestrator.engines.hf import HFBackend, candidate_uniforms
from orchestrator.errors import SvgapError
from workloads.base import QEQuery, TFQuery


@pytest.fixture(scope="module")
def be(base_model_dir) -> HFBackend:
    return HFBackend(base_model_dir, device="auto", threads=1)


@pytest.fixture(scope="module")
def problems(default_workload):
    return default_workload.problems("heldout", 64, seed=11)


def test_loads_llama_with_its_tokenizer(be):
    assert type(be.model).__name__ == "LlamaForCausalLM"
    assert next(be.model.parameters()).device.type == be.device.type
    assert be.tokenizer.eos_token_id == be.eos_id and be.pad_id is not None


def test_cuda_asked_for_where_there_is_none_is_a_named_error(base_model_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU paths are checked by benchmarks/gpu_check.py")
    with pytest.raises(SvgapError, match="model.device is 'cuda' but no CUDA device is visible"):
        HFBackend(base_model_dir, device="cuda")


def test_missing_model_dir_is_svgap_error(tmp_path):
    with pytest.raises(SvgapError, match="no model at"):
        HFBackend(tmp_path / "nothing")


def test_sample_shapes_and_stop_at_eos(be, problems, default_workload):
    prompts = [p.prompt for p in problems[:16]]
    out = be.sample(prompts, n=4, temperature=1.0, max_new_tokens=8, seeds=list(range(16)))
    assert len(out) == 16 and all(len(c) == 4 for c in out)
    finished = 0
    for cs in out:
        for s in cs:
            assert len(s.token_ids) == len(s.logprobs) == s.length >= 1
            assert all(lp <= 1e-6 for lp in s.logprobs)
            assert be.eos_id not in s.token_ids[:-1]  # nothing after EOS
            if s.finished:
                finished += 1
                assert s.token_ids[-1] == be.eos_id
            assert s.text == be.tokenizer.decode(s.token_ids, skip_special_tokens=True)
            assert math.isclose(s.nll, -sum(s.logprobs))
    assert finished >= 60  # the trained model ends its answers
    # a candidate cut off at max_new_tokens is not finished and has exactly that many tokens
    short = be.sample(prompts[:2], n=2, temperature=1.0, max_new_tokens=2, seeds=[0, 1])
    assert all(not s.finished and s.length == 2 for cs in short for s in cs)


def test_same_seed_same_candidates_other_seed_differs(be, problems):
    prompts = [p.prompt for p in problems[:8]]
    a = be.sample(prompts, 8, 1.0, 8, seeds=list(range(8)))
    b = be.sample(prompts, 8, 1.0, 8, seeds=list(range(8)))
    c = be.sample(prompts, 8, 1.0, 8, seeds=list(range(100, 108)))
    toks = lambda r: [[s.token_ids for s in cs] for cs in r]
    assert toks(a) == toks(b) and toks(a) != toks(c)


def test_sampling_invariant_to_batch_composition(be, problems):
    """A prompt's candidates depend on (seed, j) only: alone, in a big batch, in small chunks, next to
    prompts of other lengths (left padding) -- same tokens, same logprobs."""
    prompts = [p.prompt for p in problems]
    seeds = [1000 + i for i in range(len(prompts))]
    full = be.sample(prompts, 8, 1.0, 8, seeds, batch_size=512)
    chunked = be.sample(prompts, 8, 1.0, 8, seeds, batch_size=24)
    mixed_prompts = ["12+34=", prompts[5], "1+2=", prompts[9]]
    mixed = be.sample(mixed_prompts, 8, 1.0, 8, [7, seeds[5], 9, seeds[9]])
    for i in (0, 5, 9, 63):
        alone = be.sample([prompts[i]], 8, 1.0, 8, [seeds[i]])[0]
        for other in (full[i], chunked[i]) + ((mixed[1],) if i == 5 else ()) + ((mixed[3],) if i == 9 else ()):
            assert [s.token_ids for s in alone] == [s.token_ids for s in other]
            for x, y in zip(alone, other):
                assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-4


def test_uniforms_depend_only_on_seed_and_index():
    assert (candidate_uniforms(5, 3, 8) == candidate_uniforms(5, 3, 8)).all()
    assert not (candidate_uniforms(5, 3, 8) == candidate_uniforms(5, 4, 8)).all()
    assert (candidate_uniforms(5, 3, 4) == candidate_uniforms(5, 3, 8)[:4]).all()
    assert candidate_uniforms(-1, 2**70, 2).shape == (2,)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sample_logprobs_equal_teacher_forced_score(be, problems, temperature):
    """logprobs are log pi at temperature 1 whatever the sampling temperature, and equal score() (<= 1e-4)."""
    prompts = [p.prompt for p in problems[:32]] + ["12+34="]
    out = be.sample(prompts, 4, temperature, 8, seeds=list(range(len(prompts))))
    flat_p = [p for p, cs in zip(prompts, out) for _ in cs]
    flat_s = [s for cs in out for s in cs]
    scored = be.score(flat_p, [s.token_ids for s in flat_s], batch_size=50)
    for s, sc in zip(flat_s, scored):
        assert sc.length == s.length
        assert max(abs(-a - b) for a, b in zip(s.logprobs, sc.token_nll)) <= 1e-4
        assert abs(sc.nll - s.nll) <= 1e-4 * max(1, s.length)


def test_score_edge_cases(be, problems):
    p = problems[0]
    ids = be.encode(p.answer, special=False) + [be.eos_id]
    r = be.score([p.prompt, p.prompt], [ids, []])
    assert r[0].length == len(ids) and r[0].nll > 0 and len(r[0].token_nll) == len(ids)
    assert r[1].nll == 0.0 and r[1].length == 0


def test_tf_score_is_probability_and_separates_correct_from_corrupted(be, problems, default_workload):
    wl = default_workload
    good, bad = [], []
    for i, p in enumerate(problems):
        wrong = list(p.answer)
        wrong[i % 4] = str((int(wrong[i % 4]) + 1) % 10)  # one digit off by one, like a carry slip
        good.append(wl.tf_query(p, p.answer))
        bad.append(wl.tf_query(p, "".join(wrong)))
    s_good, s_bad = be.tf_score(good), be.tf_score(bad, batch_size=7)
    assert all(0.0 <= s <= 1.0 for s in s_good + s_bad)
    assert sum(s_good) / len(s_good) > sum(s_bad) / len(s_bad) + 0.3
    assert sum(g > b for g, b in zip(s_good, s_bad)) >= 0.75 * len(problems)
    # batching does not change a score
    assert be.tf_score(good[:1])[0] == pytest.approx(s_good[0], abs=1e-5)


def test_tf_score_single_segment_is_the_plain_ratio(be):
    q = TFQuery(segments=("+?875067594001.",), true_token="T", false_token="F")
    s = be.tf_score([q])[0]
    ids = be.encode(q.segments[0])
    with torch.no_grad():
        logits = be.model(input_ids=torch.tensor([ids])).logits[0, -1]
    pt, pf = torch.softmax(logits, -1)[[be.token_id("T"), be.token_id("F")]].tolist()
    assert s == pytest.approx(pt / (pt + pf), abs=1e-5)


def test_qe_score(be, problems, default_workload):
    wl = default_workload
    good = be.qe_score([wl.qe_query(p, p.answer) for p in problems])
    bad = be.qe_score([wl.qe_query(p, p.answer[::-1] + "9") for p in problems])
    assert all(0.0 <= s <= 1.0 for s in good + bad)
    assert sum(good) / len(good) > sum(bad) / len(bad)
    # grade words of several tokens are read where they first differ (engines/chat.py); words one cannot tell
    # apart by a next token are a named error
    assert 0.0 <= be.qe_score([QEQuery(text="+#", grade_tokens=("0", "TT"))])[0] <= 1.0
    with pytest.raises(SvgapError, match="one is a prefix of another"):
        be.qe_score([QEQuery(text="+#", grade_tokens=("T", "TT"))])
