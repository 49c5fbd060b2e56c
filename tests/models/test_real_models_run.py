"""Acceptance of issue 14, end to end on a real local Ray and a real sqlite MLflow:
- a Qwen2 model built here (random weights, BPE tokenizer trained here, a chat template) runs 2 rounds of `svgap run`
  on a GSM8K-format fixture through the chat template: every metric finite and logged, sampled vs teacher-forced U
  agree (<= 1e-4, float32), and round 0's U_s is the chat-wrapped prompts' (not the plain ones');
- the workload of workloads/README.md, copied into a package outside the repository, runs 2 rounds as
  `workload.name: mypkg.mod:MyTask`;
- `svgap base-model` on the Qwen2 + GSM8K pair."""
from __future__ import annotations

import io
import json
import math
import re
from contextlib import redirect_stdout

import pytest
import yaml

import tiny_hf
from orchestrator.engines.chat import workload_for
from orchestrator import config
from orchestrator.store import tracking
from orchestrator.cli import main
from orchestrator.run.round import derive_seed
from orchestrator.store.records import ROUND_METRICS
from tiny_hf import make_package
from stores import sqlite_uri

pytestmark = [pytest.mark.slow, pytest.mark.realmodel]


def _small(tmp_path, model, *extra) -> list[str]:
    return [f"model.path={model}", "workload.train_prompts=4", "workload.heldout_prompts=3", "generation.n=3",
            "generation.max_new_tokens=10", "rounds=2", "training.epochs=1", "training.batch_size=4",
            "fit.online=false", "resources.generation.actors=1", "resources.generation.cpus=1",
            f"tracking.out_dir={tmp_path / 'runs'}", *extra]  # 3 actor processes, not 4: each imports torch


def _run(tmp_path, overrides: list[str], capsys) -> tuple[str, str, dict]:
    cfg_path = tmp_path / "exp.yaml"
    cfg_path.write_text(config.dump(config.load(None, overrides)))
    uri = sqlite_uri(tmp_path / 'mlflow.db')
    assert main(["run", str(cfg_path), "--tracking-uri", uri, "--experiment", "real"]) == 0
    run_id = re.search(r"MLflow run id: (\w+)", capsys.readouterr().out).group(1)
    return run_id, uri, tracking.run_metrics(run_id, uri)


def _all_finite_and_logged(logged: dict, rounds: int = 2) -> None:
    for name in ROUND_METRICS + ("share_passing", "U_s_sampled", "tokens_per_s"):
        assert sorted(logged[name]) == list(range(rounds + 1)), name
    bad = {(k, t): v for k, series in logged.items() for t, v in series.items() if not math.isfinite(v)}
    assert not bad, bad
    for t in range(rounds + 1):
        assert logged["U_s"][t] == pytest.approx(logged["U_s_sampled"][t], abs=1e-4)  # sampled = teacher-forced
        assert 0.0 <= logged["share_passing"][t] <= 1.0


def test_qwen2_chat_model_runs_two_rounds_on_gsm8k(local_ray, tmp_path, capsys):
    from orchestrator.engines.hf import HFBackend

    model = tiny_hf.build(tmp_path / "qwen2", "qwen2")
    data = tiny_hf.write_gsm8k(tmp_path / "gsm8k.jsonl")
    overrides = _small(tmp_path, model, "workload.name=gsm8k", f"workload.options.path={data}",
                       "workload.options.heldout_fraction=0.25", "workload.options.external_fraction=0.0")
    run_id, uri, logged = _run(tmp_path, overrides, capsys)
    _all_finite_and_logged(logged)
    assert sorted(logged["time/train"]) == [0, 1]
    # the trainer opens conversations as the engines do: its first loss (one batch of all picks, LoRA B = 0, so
    # the model is still pi_0) is U_v(0) itself, measured by the verification pool
    assert logged["train/loss_first"][0] == pytest.approx(logged["U_v"][0], abs=1e-3)

    # round 0 measured the chat-wrapped prompts: the same candidates drawn here through the template give its U_s
    cfg = config.load(None, overrides)
    wl = workload_for(cfg)
    assert wl.chat
    problems = wl.problems("train", cfg.workload.train_prompts, derive_seed(cfg.seed, 0, "prompts"))
    seeds = [derive_seed(cfg.seed, 0, "train", p.id) for p in problems]
    u = {}
    for mode in ("auto", "none"):
        be = HFBackend(model, device="cpu", threads=1, chat_template=mode)
        out = be.sample([p.prompt for p in problems], cfg.generation.n, cfg.generation.temperature,
                        cfg.generation.max_new_tokens, seeds)
        u[mode] = sum(s.nll for cs in out for s in cs) / sum(len(cs) for cs in out)
    assert logged["U_s"][0] == pytest.approx(u["auto"], abs=1e-4)
    assert abs(u["none"] - u["auto"]) > 1e-2

    run_dir = tmp_path / "runs" / run_id
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["workload"]["name"] == "gsm8k" and saved["model"]["chat_template"] == "auto"
    rows = [json.loads(x) for x in (run_dir / "picks" / "round_000.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["prompt"].startswith("Solve the following math problem") for r in rows)


def test_plugin_workload_outside_the_repo_runs_two_rounds(local_ray, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(make_package(tmp_path / "site", "mypkg")))
    model = tiny_hf.build(tmp_path / "llama", "llama", chat=False)
    _, _, logged = _run(tmp_path, _small(tmp_path, model, "workload.name=mypkg.mod:MyTask",
                                         "workload.options.max_len=4"), capsys)
    _all_finite_and_logged(logged)


def test_base_model_report_for_any_model_and_workload(tmp_path):
    model = tiny_hf.build(tmp_path / "qwen2", "qwen2")
    data = tiny_hf.write_gsm8k(tmp_path / "gsm8k.jsonl")
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["base-model", "--json", "--set", "workload.name=gsm8k", "--set", f"workload.options.path={data}",
                     "--set", f"model.path={model}", "--set", "workload.heldout_prompts=3", "--set",
                     "generation.n=3", "--set", "generation.max_new_tokens=8"]) == 0
    r = json.loads(buf.getvalue())
    assert r["workload"] == "gsm8k" and r["chat_template"] is True
    # a random-weight model has no room: the room checks say so, and so do the warnings
    assert set(r["checks"]) == {"solver_accuracy", "pass_at_n", "auc"} and not r["checks"]["solver_accuracy"]["ok"]
    assert any("almost never solves" in w for w in r["warnings"])
    assert 1 <= r["heldout_prompts"] <= 3 and set(r["verifiers"]) == {"tf", "qe"}
    for k in ("solver_accuracy", "pass_at_n", "below_threshold", "bon_accuracy", "u_s", "u_v", "gap"):
        assert math.isfinite(r[k]), k
    with redirect_stdout(io.StringIO()):  # the table prints too (the room targets for a pair other than the default)
        assert main(["base-model", "--set", "workload.name=gsm8k", "--set", f"workload.options.path={data}",
                     "--set", f"model.path={model}", "--set", "workload.heldout_prompts=2", "--set",
                     "generation.n=2", "--set", "generation.max_new_tokens=4"]) == 0
