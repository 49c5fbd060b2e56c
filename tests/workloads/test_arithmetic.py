"""The arithmetic workload: problems, checker, templates, tokenizer, options, the model cache (no big model here)."""
from __future__ import annotations

import json
import os
import stat

import pytest
import torch

import workloads
from orchestrator.config import load
from orchestrator.errors import SvgapError
from orchestrator.config.typed import ConfigError
from workloads.arithmetic import templates as T
from workloads.arithmetic.cache import RECIPE_FILE, Untrusted, cached_build, content_digest
from workloads.arithmetic.options import ArithmeticOptions
from workloads.arithmetic.problems import ProblemSpace
from workloads.arithmetic.workload import ArithmeticWorkload
from workloads.base import Problem


@pytest.fixture(scope="module")
def wl() -> ArithmeticWorkload:
    return ArithmeticWorkload()


def test_problem_format_and_checker(wl):
    p = wl.space.problem(508, "+", 967)  # 508 + 967 = 1475
    assert p == Problem(id="508+967", prompt="805+769=", answer="5741")
    assert wl.check(p, "5741") and wl.check(p, " 5741\n")
    for wrong in ("5740", "574", "57410", "", "1475", "5741T"):
        assert not wl.check(p, wrong), wrong
    assert wl.reference(p) == "5741"
    small = wl.space.problem(100, "+", 100)
    assert small.prompt == "001+001=" and small.answer == "0020"


def test_subtraction_problems():
    w = ArithmeticWorkload(ArithmeticOptions(ops=["+", "-"]))
    ps = w.problems("train", 400, seed=3)
    assert {p.id[3] for p in ps} == {"+", "-"}
    for p in ps:
        a, op, b = w.space.parse_id(p.id)
        r = a + b if op == "+" else a - b
        assert r >= 0 and int(p.answer[::-1]) == r and len(p.answer) == 4
        assert w.check(p, w.reference(p))


def test_problems_seeded_distinct_and_split_disjoint(wl):
    a = wl.problems("train", 300, seed=1)
    assert a == wl.problems("train", 300, seed=1)
    assert a != wl.problems("train", 300, seed=2)
    assert len({p.id for p in a}) == 300
    train = {p.id for s in range(4) for p in wl.problems("train", 1500, seed=s)}
    held = {p.id for s in range(4) for p in wl.problems("heldout", 1500, seed=s)}
    assert train and held and not train & held
    # the split is a property of the problem, not of the seed: the same problem never changes sides
    assert len(held) < 4 * 1500  # held-out sets of different seeds overlap (10% of the problem space)


def test_pretraining_stream_avoids_heldout_and_dev():
    space = ProblemSpace(ArithmeticOptions())
    import numpy as np

    rng = np.random.default_rng(0)
    b = space.sample(rng, 5000, "pretrain")
    assert not space.in_split(b, "heldout").any() and not space.in_split(b, "dev").any()
    assert (space.answers(b) == b.a + b.b).all()


def test_tf_template_columns_and_labels(wl):
    p = wl.space.problem(508, "+", 967)
    q = wl.tf_query(p, "5741")
    assert q.segments == ("+?875", "067", "594", "001", ".") and (q.true_token, q.false_token) == ("T", "F")
    lab = lambda r: T.step_labels(p.prompt, r, 4)
    assert lab("5741") == [True] * 5
    assert lab("5731") == [True, True, False, True, True]  # the carry implied by '3' makes the '1' consistent
    assert lab("5641") == [True, False, True, True, True]
    assert lab("574") == [True, True, True, False]
    assert lab("57410") == [True, True, True, True, False, False]
    assert lab("57x1") == [True, True, False, True, True]
    assert wl.tf_query(p, "").segments == ("+?.",)
    assert wl.tf_query(p, "57410").segments[-2:] == ("000", ".")


def test_step_labels_agree_with_the_checker_on_subtraction():
    w = ArithmeticWorkload(ArithmeticOptions(ops=["-"]))
    for p in w.problems("train", 300, seed=0):
        assert all(T.step_labels(p.prompt, p.answer, 4))
        for k in range(4):
            wrong = p.answer[:k] + str((int(p.answer[k]) + 3) % 10) + p.answer[k + 1:]
            labels = T.step_labels(p.prompt, wrong, 4)
            assert labels[:k] == [True] * k and labels[k] is False  # the first wrong step is caught where it is


def test_qe_template(wl):
    p = wl.space.problem(508, "+", 967)
    q = wl.qe_query(p, "5731")
    assert q.text == "+?875T067T593T001T.T#" and q.grade_tokens == ("0", "1", "2", "3", "4")
    g = lambda r: T.qe_grade(p.prompt, r, 4)
    assert g("5741") == 4 and g("5731") == 3 and g("57410") == 3 and g("") == 0 and g("0000") == 0


def test_training_examples_match_the_query_layout():
    """What pretraining shows the model is token for token what the backend builds from a TFQuery / QEQuery."""
    from workloads.arithmetic.examples import ExampleMaker
    from workloads.arithmetic.tokenizer import VOCAB, build_tokenizer

    tok = build_tokenizer()
    w = ArithmeticWorkload()
    mk = ExampleMaker(w.options, 0)
    p = w.space.problem(508, "+", 967)
    for cand in ("5741", "5641", "574", "57410"):
        e = mk.tf(p.prompt, p.answer, cand)
        q = w.tf_query(p, cand)
        row, judged = [], []
        for k, seg in enumerate(q.segments):
            row += tok(seg, add_special_tokens=(k == 0))["input_ids"]
            judged.append(len(row))
            row.append(VOCAB[q.true_token])
        assert e.ids == row
        labels = T.step_labels(p.prompt, cand, 4)
        want = [VOCAB["T" if ok else "F"] for ok in labels]
        assert [t for pos, t in e.targets if pos in judged] == want
        # the loss never covers a wrong digit
        digit_targets = [(pos, t) for pos, t in e.targets if pos not in judged]
        assert all(labels[[j - 1 for j in judged].index(pos)] for pos, _ in digit_targets)
        qe = mk.qe(p.prompt, p.answer, cand)
        assert qe.ids[:-1] == tok(w.qe_query(p, cand).text)["input_ids"]
        assert qe.targets[-1] == (len(qe.ids) - 1, VOCAB[str(T.qe_grade(p.prompt, cand, 4))])
    s = mk.solve(p.prompt, p.answer)
    assert s.ids == tok(p.prompt + p.answer)["input_ids"] + [tok.eos_token_id]
    assert [t for _, t in s.targets] == s.ids[-5:]


def test_tokenizer_is_a_real_tokenizer_json(tmp_path):
    from transformers import AutoTokenizer

    from workloads.arithmetic.examples import ids
    from workloads.arithmetic.tokenizer import VOCAB, build_tokenizer

    build_tokenizer().save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = "805+769=5741"
    enc = tok(text)["input_ids"]
    assert enc == [tok.bos_token_id] + ids(text) and len(enc) == len(text) + 1
    assert tok.decode(enc + [tok.eos_token_id], skip_special_tokens=True) == text
    assert len(tok) == len(VOCAB)
    for s in ("T", "F", "+?875", "0", "#"):
        assert tok(s, add_special_tokens=False)["input_ids"] == ids(s)


def test_options_validated_through_config():
    with pytest.raises(ConfigError, match=r"workload\.options\.ops"):
        load(None, ["workload.options.ops=[*]"])
    with pytest.raises(ConfigError, match=r"workload\.options\.digits"):
        load(None, ["workload.options.digits=0"])
    with pytest.raises(ConfigError, match=r"workload\.options\.nope"):
        load(None, ["workload.options.nope=1"])
    with pytest.raises(ConfigError, match=r"workload\.options\.heads"):
        load(None, ["workload.options.heads=3"])
    cfg = load(None, ["workload.options.ops=[+, '-']"])
    assert cfg.workload.options["ops"] == ["+", "-"]


def test_unknown_workload_is_one_line_error():
    with pytest.raises(SvgapError, match=r"workload\.name: unknown workload 'nope'"):
        load(None, ["workload.name=nope"])
    with pytest.raises(SvgapError, match="unknown workload"):
        workloads.get("nope")


def test_unwritable_cache_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    w = ArithmeticWorkload(ArithmeticOptions(hidden_size=16, heads=2, layers=1, max_steps=1))
    with pytest.raises(SvgapError, match="not writable") as e:
        w.base_model(blocker / "cache")
    assert "\n" not in str(e.value)


TINY = {"hidden_size": 16, "heads": 2, "layers": 1, "max_steps": 6, "batch_size": 16}


def test_cache_reused_and_build_deterministic(tmp_path, said):
    w = ArithmeticWorkload(ArithmeticOptions(**TINY))
    msgs = said
    path = w.base_model(tmp_path / "a")
    assert path.name.startswith("arithmetic-") and path.parent == tmp_path / "a" / "models"
    assert any("building" in m for m in msgs)
    info = json.loads((path / RECIPE_FILE).read_text())
    assert info["recipe"]["options"]["hidden_size"] == 16 and info["build"]["steps"] == 6
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]
    assert not list(path.parent.glob(".*tmp-*"))  # the temporary build dir was renamed, not copied
    msgs.clear()  # how fast a cached load is: benchmarks/cache_load.py
    assert w.base_model(tmp_path / "a") == path
    assert any("cached" in m and "checksum verified" in m for m in msgs) and not any("building" in m for m in msgs)
    # same recipe, another cache: bit-identical weights (the build is deterministic for a seed)
    other = w.base_model(tmp_path / "b")
    from safetensors.torch import load_file

    wa, wb = load_file(path / "model.safetensors"), load_file(other / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # a different recipe is a different directory
    w2 = ArithmeticWorkload(ArithmeticOptions(**{**TINY, "seed": 1}))
    assert w2.base_model(tmp_path / "a") != path


def test_interrupted_build_leaves_nothing(tmp_path):
    def build(out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_build(tmp_path, "arithmetic", {"x": 1}, build)
    root = tmp_path / "models"
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []

    calls = []
    path = cached_build(tmp_path, "arithmetic", {"x": 1}, lambda out: calls.append(1) or
                        (out / "config.json").write_text("{}") or {"ok": True})
    assert calls == [1] and (path / RECIPE_FILE).is_file()


# ---- trust in a shared cache: world-readable, writable only by its owner, checksum verified on every load --------
def _fake_model(out):
    (out / "config.json").write_text("{}")
    fd = os.open(out / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600)  # like a saver that makes it private
    os.write(fd, b"weights")
    os.close(fd)
    (out / "sub").mkdir()
    (out / "sub" / "extra.json").write_text("[]")
    return {"ok": True}


def test_entry_is_world_readable_with_a_checksum_of_its_files(tmp_path):
    path = cached_build(tmp_path, "arithmetic", {"x": 1}, _fake_model)
    info = json.loads((path / RECIPE_FILE).read_text())
    assert info["sha256"] == content_digest(path) and len(info["sha256"]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o755 and stat.S_IMODE((path / "sub").stat().st_mode) == 0o755
    for f in ("config.json", "model.safetensors", RECIPE_FILE, "sub/extra.json"):
        assert stat.S_IMODE((path / f).stat().st_mode) == 0o644, f
    # the digest covers names and bytes of every file but the recipe
    before = content_digest(path)
    (path / "sub" / "extra.json").write_text("[1]")
    assert content_digest(path) != before


@pytest.mark.parametrize("tamper, why", [
    (lambda p: (p / "model.safetensors").write_bytes(b"planted"), "do not match the SHA-256 recorded"),
    (lambda p: (p / "tokenizer.json").write_text("{}"), "do not match the SHA-256 recorded"),  # an added file
    (lambda p: os.chmod(p / "model.safetensors", 0o666), "is writable by other users"),
    (lambda p: os.chmod(p, 0o775), "is writable by other users"),
])
def test_tampered_entry_is_refused_not_loaded(tmp_path, tamper, why):
    path = cached_build(tmp_path, "arithmetic", {"x": 1}, _fake_model)
    tamper(path)
    calls = []
    with pytest.raises(Untrusted) as e:
        cached_build(tmp_path, "arithmetic", {"x": 1}, lambda out: calls.append(1) or _fake_model(out))
    msg = str(e.value)
    assert why in msg and f"base model cache entry {path} refused" in msg and "\n" not in msg, msg
    assert calls == [] and path.is_dir()  # neither rebuilt over nor deleted: the user decides


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_entry_owned_by_another_user_is_refused(tmp_path):
    path = cached_build(tmp_path, "arithmetic", {"x": 1}, _fake_model)
    os.chown(path / "model.safetensors", 12345, 12345)
    with pytest.raises(Untrusted, match=r"belongs to another user \(uid 12345\)"):
        cached_build(tmp_path, "arithmetic", {"x": 1}, _fake_model)


def test_entry_without_checksum_is_rebuilt(tmp_path, said):
    """What an older svgap left (or anyone can plant): the two files the cache used to accept."""
    key = cached_build(tmp_path / "probe", "arithmetic", {"x": 1}, _fake_model).name
    old = tmp_path / "models" / key
    old.mkdir(parents=True)
    (old / "config.json").write_text('{"planted": true}')
    (old / RECIPE_FILE).write_text(json.dumps({"name": key, "recipe": {"x": 1}, "build": {}}))
    msgs = said
    msgs.clear()
    path = cached_build(tmp_path, "arithmetic", {"x": 1}, _fake_model)
    assert path == old and any("built before checksums were recorded" in m for m in msgs), msgs
    assert (path / "config.json").read_text() == "{}" and json.loads((path / RECIPE_FILE).read_text())["sha256"]
    assert [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")] == [key]
