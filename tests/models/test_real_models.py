"""Any local HF causal LM through the HF engine: Llama, Qwen2 and Gemma2 (final logit soft-capping) built here with
random weights and a BPE tokenizer with a chat template. Sampled and teacher-forced logprobs agree (float32,
<= 1e-4); prompts go through the chat template; sampling stops at every end id and at stop strings; scores come
from the model's own (soft-capped) logits."""
from __future__ import annotations

import math

import pytest
import torch

import tiny_hf
from orchestrator.engines.chat import PromptFormat, word_tokens
from orchestrator.engines.hf import HFBackend
from orchestrator.errors import SvgapError
from workloads.base import TFQuery
from workloads import math_prompts

pytestmark = [pytest.mark.realmodel]

PROMPTS = ["Tom has 3 apples and buys 4 more. How many apples does he have?", "Compute $3^2$.", "2+2?"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_hf")
    return {arch: tiny_hf.build(root / arch, arch) for arch in ("llama", "qwen2", "gemma2")}


@pytest.fixture(scope="module")
def engines(models):
    return {arch: HFBackend(path, device="cpu", threads=1) for arch, path in models.items()}


def _agree(be: HFBackend, temperature: float) -> tuple[float, int]:
    out = be.sample(PROMPTS, 4, temperature, 14, seeds=[11, 12, 13])
    flat_p = [p for p, cs in zip(PROMPTS, out) for _ in cs]
    flat = [s for cs in out for s in cs]
    scored = be.score(flat_p, [s.token_ids for s in flat], batch_size=5)
    worst = 0.0
    for s, sc in zip(flat, scored):
        assert sc.length == s.length == len(s.logprobs)
        worst = max(worst, max(abs(-a - b) for a, b in zip(s.logprobs, sc.token_nll)))
        assert abs(sc.nll - s.nll) <= 1e-4 * max(1, s.length)
    return worst, sum(s.length for s in flat)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2"])
def test_sampled_and_teacher_forced_logprobs_agree(engines, arch):
    be = engines[arch]
    assert be.prompts.chat and type(be.model).__name__.lower().startswith(arch[:5])
    for temperature in (1.0, 0.7):
        worst, tokens = _agree(be, temperature)
        assert tokens > 40 and worst <= 1e-4, (arch, temperature, worst)


def test_plain_prompts_when_chat_template_none(models):
    be = HFBackend(models["qwen2"], device="cpu", threads=1, chat_template="none")
    assert not be.prompts.chat
    assert be.prompts.encode("2+2?") == be.tokenizer("2+2?")["input_ids"]
    worst, _ = _agree(be, 1.0)
    assert worst <= 1e-4


def test_chat_template_wraps_every_conversation_start(engines):
    be = engines["qwen2"]
    want = be.tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                            add_generation_prompt=True)
    assert want.startswith("<|im_start|>user\n2+2?<|im_end|>") and want.endswith("<|im_start|>assistant\n")
    assert be.prompts.encode("2+2?") == be.tokenizer(want, add_special_tokens=False)["input_ids"]
    # teacher-forced U of a response is read after the rendered prompt: equal to a direct forward on it
    resp = be.tokenizer("4", add_special_tokens=False)["input_ids"] + [be.eos_id]
    ids = be.prompts.encode("2+2?") + resp
    with torch.no_grad():
        logp = torch.log_softmax(be.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    k = len(ids) - len(resp)
    direct = -sum(float(logp[k - 1 + j, t]) for j, t in enumerate(resp))
    assert be.score(["2+2?"], [resp])[0].nll == pytest.approx(direct, abs=1e-4)


def test_gemma2_scores_with_its_soft_capped_logits(engines):
    """The scores are the model's own logits (final soft-cap 3.0): a decoder + lm_head assembled outside the forward
    would give other numbers -- this test would see it."""
    be = engines["gemma2"]
    ids = be.prompts.encode(PROMPTS[0])
    with torch.no_grad():
        own = be.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        raw = be.model.lm_head(be.model.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state)[0, -1]
    assert own.abs().max() <= 3.0 + 1e-4 and (own - raw).abs().max() > 0.1  # the cap matters for this model
    q = math_prompts.tf_query(PROMPTS[0], "7", chat=True)
    assert be.tf_score([q])[0] == pytest.approx(_word_ratio(be, q.segments[0], "True", "False"), abs=1e-5)


def _word_ratio(be: HFBackend, opening: str, a: str, b: str) -> float:
    """P(a) / (P(a) + P(b)) after the rendered opening, each word's probability the product over its tokens, by
    direct forwards of the model (what the engine must compute, words of any number of tokens)."""
    return _ratio_after(be, be.prompts.encode(opening), a, b)


def _ratio_after(be: HFBackend, ctx: list[int], a: str, b: str) -> float:
    def logp(word: str) -> float:
        ids = be.tokenizer(word, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(be.model(input_ids=torch.tensor([ctx + ids])).logits[0].float(), -1)
        return sum(float(lp[len(ctx) - 1 + j, t]) for j, t in enumerate(ids))

    la, lb = logp(a), logp(b)
    return 1.0 / (1.0 + math.exp(lb - la))


def test_sampling_stops_at_every_end_id_and_at_stop_strings(tmp_path):
    tok = tiny_hf.tokenizer()
    ends = list(range(3, 120))  # many end ids: most candidates end early, on ids other than the tokenizer's EOS
    path = tiny_hf.build(tmp_path / "ends", "llama", stop_strings=None)
    import json

    gen = json.loads((path / "generation_config.json").read_text())
    gen["eos_token_id"] = [tok.convert_tokens_to_ids("<|im_end|>")] + ends
    (path / "generation_config.json").write_text(json.dumps(gen))
    be = HFBackend(path, device="cpu", threads=1)
    out = [s for cs in be.sample(PROMPTS, 6, 1.0, 24, seeds=[1, 2, 3]) for s in cs]
    ended = [s for s in out if s.finished]
    assert len(ended) >= len(out) // 2 and any(s.token_ids[-1] != tok.eos_token_id for s in ended)
    for s in out:
        assert not set(s.token_ids[:-1]) & set(be.stop_ids)
        assert s.finished == (s.token_ids[-1] in be.stop_ids)

    stop_path = tiny_hf.build(tmp_path / "stops", "qwen2", stop_strings=["a"])
    be = HFBackend(stop_path, device="cpu", threads=1)
    out = [s for cs in be.sample(PROMPTS, 6, 1.0, 24, seeds=[1, 2, 3]) for s in cs]
    cut = [s for s in out if s.finished and "a" in s.text]
    assert cut, "no candidate met the stop string"
    for s in cut:  # ends with the token completing the stop string, logprobs cut alike
        assert "a" not in be.tokenizer.decode(s.token_ids[:-1], skip_special_tokens=True)
        assert len(s.logprobs) == s.length
    worst = max(abs(-a - b) for s, sc in zip(out, be.score([p for p in PROMPTS for _ in range(6)],
                                                           [s.token_ids for s in out])) for a, b in
                zip(s.logprobs, sc.token_nll))
    assert worst <= 1e-4


def test_verifier_words_of_several_tokens(engines):
    be = engines["llama"]
    tok = be.tokenizer
    prefix, ids = word_tokens(tok, [" True", " False"], "TF words")
    assert len(prefix) + len(ids[0]) == len(tok(" True", add_special_tokens=False)["input_ids"])
    assert max(len(t) for t in ids) > 1 or len(prefix) > 0  # this tokenizer splits " True" (else no test)
    for chat in (False, True):  # " True" / " False" after "Judgment:", "True" / "False" opening the turn
        q = math_prompts.tf_query("2+2?", "4", chat=chat)
        want = _word_ratio(be, q.segments[0], q.true_token, q.false_token)
        assert be.tf_score([q])[0] == pytest.approx(want, abs=1e-5)
    # two judgments, words of several tokens: the product over judgments, the true word following the first
    two = TFQuery(segments=("Is 2+2=4?\nJudgment:", "\nAnd 3+3=6?\nJudgment:"), true_token=" True",
                  false_token=" False")
    words = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    ctx1 = be.prompts.encode(two.segments[0])
    ctx2 = ctx1 + words(" True") + words(two.segments[1])
    want = _ratio_after(be, ctx1, " True", " False") * _ratio_after(be, ctx2, " True", " False")
    assert be.tf_score([two])[0] == pytest.approx(want, abs=1e-5)
    g = be.qe_score([math_prompts.qe_query("2+2?", "4", chat=False), math_prompts.qe_query("2+2?", "4", chat=True)])
    assert all(0.0 <= x <= 1.0 for x in g)
    with pytest.raises(SvgapError, match="prefix of another"):
        word_tokens(tok, ["True", "TrueTrue"], "TF words")


def test_prompt_format_refuses_a_template_the_tokenizer_lacks(models):
    tok = tiny_hf.tokenizer()
    assert PromptFormat.for_model(tok, models["qwen2"], "none").chat is False
    import copy

    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(SvgapError, match="did not load it"):
        PromptFormat(bare, chat=True)
