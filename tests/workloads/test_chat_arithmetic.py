"""chat_arithmetic: splits, checking through the extractor, verifier queries, options."""
import pytest

import workloads
from orchestrator.config import load
from orchestrator.config.typed import ConfigError


def make(**options):
    return workloads.get("chat_arithmetic", options)


def test_splits_disjoint_and_seeded():
    wl = make(max_operand=12)
    ids = {s: {p.id for p in wl.problems(s, len(wl._splits[s]), 0)} for s in ("train", "heldout", "external")}
    assert not (ids["train"] & ids["heldout"]) and not (ids["train"] & ids["external"]) \
        and not (ids["heldout"] & ids["external"])
    assert sum(map(len, ids.values())) == 3 * 13 * 13 - 13 * 12 // 2  # + and *: 13x13; -: a >= b
    assert [p.id for p in wl.problems("train", 10, 7)] == [p.id for p in wl.problems("train", 10, 7)]
    assert [p.id for p in wl.problems("train", 10, 7)] != [p.id for p in wl.problems("train", 10, 8)]


def test_too_many_problems_is_one_line():
    wl = make(max_operand=3)
    with pytest.raises(Exception, match="the split holds"):
        wl.problems("heldout", 1000, 0)


def test_check_and_queries():
    wl = make()
    p = next(q for q in wl.problems("train", 60, 0) if "*" in q.id)
    a, b = map(int, p.id.split("*"))
    assert wl.check(p, f"{a} * {b} = {a * b}") and wl.check(p, f"The answer is {a * b}.")
    assert not wl.check(p, f"{a} * {b} = {a * b + 1}") and not wl.check(p, "I cannot say.")
    tf = wl.tf_query(p, f"The answer is {a * b + 1}.")
    assert tf.segments == (f"{a} * {b} = {a * b + 1}\nIs this equation true? Answer True or False.",)
    assert wl.tf_query(p, "no idea").segments[0].startswith(f"{a} * {b} = no idea")
    assert wl.qe_query(p, "3").grade_tokens == ("1", "2", "3", "4", "5")
    assert wl.reference(p) == f"{a} * {b} = {a * b}" and wl.check(p, wl.reference(p))
    assert p.prompt == f"What is {a} * {b}? Answer with just the number."


def test_subtraction_never_negative():
    wl = make(ops=["-"], max_operand=9)
    assert all(int(p.answer) >= 0 for p in wl.problems("train", 20, 0))


@pytest.mark.parametrize("key,value,msg", [("ops", ["/"], "ops"), ("min_operand", 50, "min_operand"),
                                           ("heldout_fraction", 0.9, "heldout_fraction")])
def test_bad_options_name_the_key(key, value, msg):
    with pytest.raises(ConfigError, match=msg):
        load(None, ["workload.name=chat_arithmetic", f"workload.options.{key}={value}"])


def test_system_prompt_from_workload_unless_set():
    from orchestrator.models.source import system_prompt_of

    cfg = load("configs/smollm2.yaml")
    assert system_prompt_of(cfg).startswith("You are a helpful assistant")
    assert system_prompt_of(load("configs/smollm2.yaml", ["model.system_prompt=template"])) is None
    assert system_prompt_of(load("configs/smollm2.yaml", ["model.system_prompt=Be brief."])) == "Be brief."
    assert system_prompt_of(load(None)) is None  # the arithmetic workload has none


def test_missing_real_model_says_how_to_import_it(tmp_path, monkeypatch, capsys):
    from orchestrator.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))  # configs/smollm2.yaml names ~/.cache/svgap/models/...
    assert main(["base-model", "configs/smollm2.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "make real-model, or svgap model import smollm2" in err[0]
