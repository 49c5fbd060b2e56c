"""Each token once (issue 25): the HF engine's verification with the template prefix's cache, identical rows merged
and one vectorised read of the verifier words gives the numbers of the plain path (every row whole, one read per
judgment: the reference kept below), and the round's U from the generation logprobs equals the teacher-forced pass
-- on the shipped model and on a tiny chat Llama with a system turn."""
from __future__ import annotations

import pytest
import torch

import tiny_hf
from orchestrator.engines.hf import HFBackend
from orchestrator.engines.weights import FullUpdate

SYSTEM = "You are a careful assistant who checks arithmetic step by step."


def reference_scores(be: HFBackend, queries: list, method: str) -> list[float]:
    """Verifier scores as the engine computed them before issue 25: every row run whole, one log-softmax and one
    stack per judgment."""
    be.share = False
    try:
        rows, where, plans, _ = be._judge_rows(queries, method)
        logits = be._logits_sorted(rows, where, 512)
    finally:
        be.share = True

    @torch.no_grad()
    def word_logps(judgment):
        return torch.stack([sum(torch.log_softmax(logits[r].float(), -1)[k, tok] for r, k, tok in reads)
                            for reads in judgment])

    if method == "tf":
        return [float(torch.exp(sum(torch.nn.functional.logsigmoid(lp[0] - lp[1])
                                    for lp in map(word_logps, judgments)))) for judgments in plans]
    out = []
    for (judgment,) in plans:
        p = torch.softmax(word_logps(judgment), -1)
        out.append(float((p * torch.arange(len(p), dtype=p.dtype)).sum() / (len(p) - 1)))
    return out


def reference_u(be: HFBackend, prompts: list[str], ids: list[list[int]]) -> list[float]:
    be.share = False
    try:
        return [s.nll for s in be.score(prompts, ids)]
    finally:
        be.share = True


@pytest.fixture(scope="module")
def chat_be(tmp_path_factory) -> HFBackend:
    path = tiny_hf.build(tmp_path_factory.mktemp("llama") / "model", "llama", chat=True, seed=1)
    return HFBackend(path, threads=1, system_prompt=SYSTEM)


@pytest.fixture(scope="module")
def shipped_be(base_model_dir) -> HFBackend:
    return HFBackend(base_model_dir, threads=1)


def candidates(be: HFBackend, workload, k: int = 6, n: int = 4):
    problems = workload.problems("train", k, 3)
    samples = be.sample([p.prompt for p in problems], n, 1.0, 8, seeds=list(range(k)))
    return [(p, s) for p, row in zip(problems, samples) for s in row]


@pytest.fixture(scope="module")
def chat_workload():
    import workloads

    return workloads.get("chat_arithmetic", {})


@pytest.mark.parametrize("which", ["shipped", "chat"])
@pytest.mark.parametrize("method", ["tf", "qe"])
def test_shared_verification_equals_the_plain_path(which, method, request, default_workload, chat_workload):
    be = request.getfixturevalue(f"{which}_be")
    wl = default_workload if which == "shipped" else chat_workload
    cands = candidates(be, wl)
    make = wl.tf_query if method == "tf" else wl.qe_query
    queries = [make(p, s.text) for p, s in cands]
    prompts, ids = [p.prompt for p, _ in cands], [s.token_ids for _, s in cands]
    want_s, want_u = reference_scores(be, queries, method), reference_u(be, prompts, ids)
    got_s, scored = be.verify(queries, method, list(zip(prompts, ids)))
    assert max(abs(a - b) for a, b in zip(got_s, want_s)) <= 1e-4
    assert max(abs(a.nll - b) for a, b in zip(scored, want_u)) <= 1e-4
    # what the round takes when it runs no second pass (run/round.py: sampled_is_scored): the sampled logprobs
    assert max(abs(s.nll - b) for (_, s), b in zip(cands, want_u)) <= 1e-4
    # a row's numbers do not depend on the rest of its call beyond the last bits of a smaller matmul (the plain path
    # alike; tests/run/test_determinism.py checks whole rounds bit for bit over 1 and 2 actors)
    alone_s, alone_u = be.verify(queries[5:7], method, list(zip(prompts, ids))[5:7])
    assert alone_s + [a.nll for a in alone_u] == pytest.approx(got_s[5:7] + [a.nll for a in scored[5:7]], abs=1e-6)


def test_template_prefix_runs_once_and_identical_rows_once(chat_be, chat_workload):
    """A chat model's system turn is run once per model version; the same verifier query twice runs once."""
    be = chat_be
    p = len(be.prefix.tokens)
    assert p >= 10 and be.tokenizer.decode(be.prefix.tokens).count(SYSTEM) == 1
    cands = candidates(be, chat_workload, k=3, n=2)
    queries = [chat_workload.tf_query(q, s.text) for q, s in cands]
    rows, where, _, _ = be._judge_rows(queries + queries, "tf")
    be.prefix.reset()
    before = be.verify_tokens.as_dict()
    be.tf_score(queries + queries)
    after = be.verify_tokens.as_dict()
    distinct = {(tuple(r), tuple(w)) for r, w in zip(rows, where)}
    assert after["rows"] - before["rows"] == len(rows)
    assert after["row_tokens"] - before["row_tokens"] == sum(map(len, rows))
    assert after["distinct_rows"] - before["distinct_rows"] == len(distinct) <= len(rows) // 2
    assert after["computed"] - before["computed"] == p + sum(len(r) - p for r, _ in distinct)
    be.tf_score(queries)  # the prefix's cache is kept: only the rows' own tokens run
    assert be.verify_tokens.computed - after["computed"] == sum(len(r) - p for r, _ in distinct)


def test_new_weights_renew_the_prefix_cache(tmp_path, chat_workload):
    """After load_weights the template prefix is run again with the new weights: scores equal the plain path's."""
    be = HFBackend(tiny_hf.build(tmp_path / "model", "llama", chat=True, seed=2), threads=1, system_prompt=SYSTEM)
    queries = [chat_workload.tf_query(q, s.text) for q, s in candidates(be, chat_workload, k=2, n=2)]
    first = be.tf_score(queries)
    shifted = {k: v.detach().numpy() * 1.5 for k, v in be.model.state_dict().items()}
    assert be.load_weights(FullUpdate(1, shifted)) == 1
    again = be.tf_score(queries)
    assert again != first
    assert max(abs(a - b) for a, b in zip(again, reference_scores(be, queries, "tf"))) <= 1e-4


def test_sampling_after_the_prefix_cache_draws_the_same_candidates(chat_be, chat_workload):
    """Prompts that open with the template prefix are sampled after its cache: the same tokens as the plain path,
    the same logprobs to float precision."""
    be = chat_be
    prompts = [p.prompt for p in chat_workload.problems("train", 5, 4)]
    shared = be.sample(prompts, 3, 1.0, 6, seeds=list(range(5)))
    be.share = False
    try:
        plain = be.sample(prompts, 3, 1.0, 6, seeds=list(range(5)))
    finally:
        be.share = True
    for a, b in zip((s for row in shared for s in row), (s for row in plain for s in row)):
        assert a.token_ids == b.token_ids and a.finished == b.finished
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
