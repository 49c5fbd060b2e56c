"""Workloads: gsm8k and math from local JSONL fixtures (math-verify checking, seeded-hash splits, prompt formats with
and without chat template), and the registry: built-ins, `package.module:Class`, the `svgap.workloads` entry-point
group, options validated against the plug-in's own dataclass, one-line errors (CLI exit 2)."""
from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

import tiny_hf
from tiny_hf import make_package, readme_example
import workloads
from orchestrator import config
from orchestrator.cli import main
from orchestrator.errors import SvgapError
from orchestrator.config.typed import ConfigError
from orchestrator.engines.chat import workload_for
from workloads.base import Problem

@pytest.fixture
def gsm8k(tmp_path):
    return workloads.get("gsm8k", {"path": str(tiny_hf.write_gsm8k(tmp_path / "g.jsonl")),
                                   "heldout_fraction": 0.25, "external_fraction": 0.25})


def test_gsm8k_splits_are_disjoint_seeded_and_independent_of_file_order(gsm8k, tmp_path):
    ids = {s: {p.id for p in gsm8k.problems(s, 100, 0)} for s in ("train", "heldout", "external")}
    assert sum(map(len, ids.values())) == len(tiny_hf.GSM8K) and all(ids.values())
    assert not (ids["train"] & ids["heldout"]) and not (ids["train"] & ids["external"])
    assert [p.id for p in gsm8k.problems("train", 3, 5)] == [p.id for p in gsm8k.problems("train", 3, 5)]
    rev = tmp_path / "rev.jsonl"
    rev.write_text("".join(reversed((tmp_path / "g.jsonl").read_text().splitlines(keepends=True))))
    other = workloads.get("gsm8k", {"path": str(rev), "heldout_fraction": 0.25, "external_fraction": 0.25})
    assert {p.id for p in other.problems("heldout", 100, 0)} == ids["heldout"]
    moved = workloads.get("gsm8k", {"path": str(rev), "heldout_fraction": 0.25, "external_fraction": 0.25,
                                    "split_seed": 1})
    assert {p.id for p in moved.problems("heldout", 100, 0)} != ids["heldout"]


def test_gsm8k_checks_answers_with_math_verify(gsm8k):
    p = next(p for p in gsm8k.problems("train", 100, 0) + gsm8k.problems("heldout", 100, 0)
             + gsm8k.problems("external", 100, 0) if "1,000" in p.answer or "1000" in p.answer)
    assert "<<" not in p.answer and gsm8k.reference(p) == p.answer  # calculator notes gone from the reference
    assert gsm8k.check(p, "She keeps 1200 - 200 = 1000 stamps.\n#### 1000")
    assert gsm8k.check(p, "#### 1,000.0")
    assert gsm8k.check(p, "so the answer is 1000")  # no '####': the last number
    assert not gsm8k.check(p, "#### 999") and not gsm8k.check(p, "no idea")
    # a plain model that goes on with a question of its own: that tail is neither checked nor judged
    rambling = "1200 - 200 = 1000\n#### 1000\nQuestion: And 5 more?\nAnswer: 1005\n#### 1005"
    assert gsm8k.check(p, rambling) and "And 5 more" not in gsm8k.tf_query(p, rambling).segments[0]


def test_math_workload_boxed_answers(tmp_path):
    wl = workloads.get("math", {"path": str(tiny_hf.write_math(tmp_path / "m.jsonl")), "heldout_fraction": 0.0,
                                "external_fraction": 0.0})
    probs = {p.prompt.split("Problem: ")[-1].split("\n")[0]: p for p in wl.problems("train", 100, 0)}
    half = next(p for k, p in probs.items() if "frac{1}{2} +" in k)
    assert wl.check(half, "We get \\boxed{\\frac{3}{4}}") and wl.check(half, "so \\boxed{0.75}")
    assert not wl.check(half, "\\boxed{\\frac{1}{4}}") and not wl.check(half, "3/4 without a box")


def test_prompt_formats_with_and_without_chat_template(gsm8k):
    p = gsm8k.problems("train", 1, 0)[0]
    assert p.prompt.startswith("Question: ") and p.prompt.endswith(":")
    tf, qe = gsm8k.tf_query(p, "#### 7"), gsm8k.qe_query(p, "#### 7")
    assert tf.segments[0].endswith("Judgment:") and tf.true_token == " True" and qe.grade_tokens[0] == " 1"
    gsm8k.use_chat_template(True)
    c = gsm8k.problems("train", 1, 0)[0]
    assert c.id == p.id and c.prompt.startswith("Solve the following") and "Question:" not in c.prompt
    tf = gsm8k.tf_query(c, "#### 7")
    assert tf.true_token == "True" and tf.segments[0].endswith("Answer True or False.")
    assert "Problem: " + next(q for q, _ in tiny_hf.GSM8K if q in c.prompt) in tf.segments[0]


def test_for_config_tells_the_workload_about_the_models_template(tmp_path):
    data = str(tiny_hf.write_gsm8k(tmp_path / "g.jsonl"))
    # what decides is the model folder's files (read without loading the model): the template in
    # tokenizer_config.json or in chat_template.jinja (how transformers saves it now)
    in_config, in_file, plain_model = (tmp_path / n for n in ("c", "j", "p"))
    for d in (in_config, in_file, plain_model):
        d.mkdir()
        (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    (in_config / "tokenizer_config.json").write_text(json.dumps({"chat_template": tiny_hf.CHATML}))
    (in_file / "chat_template.jinja").write_text(tiny_hf.CHATML)
    for model, mode, chat in ((in_config, "auto", True), (in_file, "auto", True), (in_file, "none", False),
                              (plain_model, "auto", False)):
        cfg = config.load(None, ["workload.name=gsm8k", f"workload.options.path={data}", f"model.path={model}",
                                 f"model.chat_template={mode}"])
        assert workload_for(cfg).chat is chat, (model, mode)


@pytest.mark.parametrize("options, needle", [
    ({}, "workload.options.path: required"),
    ({"path": "/nonexistent/x.jsonl"}, "workload.options.path: no file at /nonexistent/x.jsonl"),
    ({"path": "BAD", "heldout_fraction": 0.6, "external_fraction": 0.5}, "heldout_fraction: with external_fraction"),
    ({"path": "x", "colour": 1}, "workload.options.colour: unknown key"),
])
def test_math_file_options_errors(options, needle):
    with pytest.raises((ConfigError, SvgapError), match=re.escape(needle)):
        config.load(None, ["workload.name=gsm8k"] + [f"workload.options.{k}={v}" for k, v in options.items()])
        workloads.get("gsm8k", options)


def test_bad_jsonl_lines_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "#### 1"}) + "\n{not json\n")
    with pytest.raises(SvgapError, match=r"bad.jsonl line 2 is not JSON"):
        workloads.get("gsm8k", {"path": str(bad)})
    bad.write_text(json.dumps({"problem": "p"}) + "\n")
    with pytest.raises(SvgapError, match=r"line 1 lacks the text fields problem and solution"):
        workloads.get("math", {"path": str(bad)})


# -- plug-ins ----------------------------------------------------------------------------------------------------------
README_BODY_BARE_OPTION = readme_example().replace("min_len: int = 3  # every option needs a default",
                                                   "min_len: int")


def test_readme_example_is_a_workload_by_module_and_class(tmp_path, monkeypatch):
    assert 35 <= len(readme_example().splitlines()) <= 70
    monkeypatch.syspath_prepend(str(make_package(tmp_path, "mypkg_a")))
    cfg = config.load(None, ["workload.name=mypkg_a.mod:MyTask", "workload.options.max_len=6"])
    wl = workloads.get(cfg.workload.name, cfg.workload.options)
    train, held = wl.problems("train", 20, 1), wl.problems("heldout", 5, 1)
    assert not {p.id for p in train} & {p.id for p in held}
    p = train[0]
    assert wl.check(p, p.id[::-1]) and not wl.check(p, p.id + "x")
    assert wl.tf_query(p, "ab").true_token == " True" and len(wl.qe_query(p, "ab").grade_tokens) == 3
    with pytest.raises(ConfigError, match=r"workload.options.min_len: must be in 1..max_len"):
        config.load(None, ["workload.name=mypkg_a.mod:MyTask", "workload.options.min_len=9"])
    with pytest.raises(ConfigError, match=r"workload.options.colour: unknown key"):
        config.load(None, ["workload.name=mypkg_a.mod:MyTask", "workload.options.colour=red"])


def test_entry_point_group_names_a_plugin(tmp_path, monkeypatch):
    root = make_package(tmp_path, "mypkg_b")
    dist = root / "mypkg_b-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg-b\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[svgap.workloads]\nreverse = mypkg_b.mod:MyTask\n")
    monkeypatch.syspath_prepend(str(root))
    cfg = config.load(None, ["workload.name=reverse"])
    assert type(workloads.get(cfg.workload.name, cfg.workload.options)).__name__ == "MyTask"
    with pytest.raises(ConfigError, match=r"unknown workload 'nope' \(known: arithmetic, gsm8k, math, chat_arithmetic, reverse"):
        config.load(None, ["workload.name=nope"])


@pytest.mark.parametrize("name, body, needle", [
    ("nope", None, "workload.name: unknown workload 'nope'"),
    ("mypkg_c.mod:MyTask", "import not_a_module_anywhere\n",
     "workload.name: cannot import mypkg_c.mod for workload 'mypkg_c.mod:MyTask' (ModuleNotFoundError"),
    ("mypkg_c.mod:Missing", "", "workload.name: module mypkg_c.mod has no Missing"),
    ("mypkg_c.mod:Half", "class Half:\n    def problems(self, split, n, seed): return []\n",
     "does not implement the workload protocol of workloads/base.py (missing check, tf_query, qe_query, reference)"),
    ("mypkg_c.mod:MyTask", README_BODY_BARE_OPTION, "'mypkg_c.mod:MyTask'.Options.min_len has no default"),
])
def test_bad_workload_names_are_one_line_exit_2(tmp_path, monkeypatch, capsys, name, body, needle):
    if body is not None:
        monkeypatch.syspath_prepend(str(make_package(tmp_path, "mypkg_c", body)))
    monkeypatch.delitem(sys.modules, "mypkg_c.mod", raising=False)
    monkeypatch.delitem(sys.modules, "mypkg_c", raising=False)
    assert main(["base-model", "--set", f"workload.name={name}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err


def test_problem_ids_are_stable_names(gsm8k):
    p = gsm8k.problems("train", 1, 0)[0]
    assert isinstance(p, Problem) and re.fullmatch(r"gsm8k-[0-9a-f]{12}", p.id)
    assert textwrap.dedent(p.prompt) == p.prompt


def test_math_workloads_need_a_model_path(tmp_path, capsys):
    data = tiny_hf.write_gsm8k(tmp_path / "g.jsonl")
    assert main(["base-model", "--set", "workload.name=gsm8k", "--set", f"workload.options.path={data}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workload gsm8k builds no base model; set model.path" in err, err


def test_plugins_written_before_the_layout_still_import_orchestrator_typed():
    """A plug-in's `from orchestrator.typed import ConfigError, rng` keeps working: the same objects as the new path."""
    import orchestrator.config.typed as new
    import orchestrator.typed as old

    assert old.ConfigError is new.ConfigError and old.rng is new.rng and old.from_dict is new.from_dict
