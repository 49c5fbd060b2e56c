"""Every command resolves its config through config.resolve: a bad key is the same one line (exit 2) whichever
command met it, and an old run's saved config.yaml still loads."""
from __future__ import annotations

import pytest
import yaml

from orchestrator import config
from orchestrator.cli import main
from orchestrator.config import ConfigError
from orchestrator.errors import SvgapError
from orchestrator.studies.variants import build_variants

NEEDLE = "generation.bogus: unknown key (known keys here: batch_size, max_new_tokens, n, temperature)"


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("argv", [
    ["run"],
    ["submit", "--address", "http://127.0.0.1:1"],
    ["base-model"],
    ["sweep", "--grid", "generation.n=2,4"],
    ["allocate", "--strategies", "none,early", "--budget", "4"],
])
def test_a_bad_key_is_the_same_line_for_every_command(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--set", "generation.bogus=1"]) == 2
    assert NEEDLE in one_error_line(capsys)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()  # refused before anything


def test_a_bad_key_in_a_file_is_the_same_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  bogus: 1\n")
    for argv in (["run", str(path)], ["base-model", str(path)]):
        assert main(argv) == 2
        assert NEEDLE in one_error_line(capsys)


def saved_run(tmp_path, data: dict):
    folder = tmp_path / "runs" / "0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


def test_resume_and_sync_resolve_the_saved_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = saved_run(tmp_path, {"generation": {"bogus": 1}})
    assert main(["run", "--resume", str(folder)]) == 2
    line = one_error_line(capsys)
    assert f"run folder {folder}: its config no longer validates: {NEEDLE}" in line
    assert main(["sync", str(folder)]) == 2
    assert NEEDLE in one_error_line(capsys)


def test_a_trials_grid_point_is_resolved_the_same_way():
    with pytest.raises(SvgapError, match="grid point generation.bogus=1: " + NEEDLE.replace("(", r"\(")
                       .replace(")", r"\)")):
        build_variants({}, {"generation.bogus": [1]}, 1)
    base, variants = build_variants({}, {"generation.n": [2]}, 2)
    assert [v.cfg for v in variants] == [config.resolve(overrides=["generation.n=2", f"seed={s}",
                                                                   f"tracking.run_name=generation.n=2 seed {s}"])
                                         for s in (0, 1)]
    assert base == config.resolve()


def test_resolve_merges_file_overrides_saved_config_and_point_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  n: 4\nrounds: 3\n")
    cfg = config.resolve(path, ["generation.n=6"], point={"rounds": 5})
    assert (cfg.generation.n, cfg.rounds) == (6, 5)
    saved = saved_run(tmp_path, config.to_dict(cfg)) / "config.yaml"
    assert config.resolve(saved=saved, overrides=["resources.timeout_s=5"]).resources.timeout_s == 5.0
    with pytest.raises(SvgapError, match="drop the config file"):
        config.resolve(path, saved=saved)


# A run folder's config.yaml as svgap wrote it before the config became pydantic models (every key, in order).
OLD_SAVED = """\
workload: {name: arithmetic, train_prompts: 64, heldout_prompts: 100, heldout_samples: 1, options: {digits: 3,
  ops: [+], heldout_fraction: 0.1, seed: 0, hidden_size: 64, mlp_ratio: 4, layers: 4, heads: 4, init_std: 0.1,
  lr: 0.006, batch_size: 128, verify_share_first: 0.7, verifier_ready_auc: 0.95, verify_share: 0.5, qe_share: 0.5,
  target_accuracy: 0.4, max_steps: 4000, max_seconds: 600.0}}
model: {path: null, cache_dir: ~/.cache/svgap, device: auto, dtype: float32, engine: hf, vllm: {max_num_seqs: 2048,
  max_num_batched_tokens: 32768, kv_cache_mb: 256, max_lora_rank: 16, max_model_len: null, enforce_eager: true,
  threads_bind: nobind, lora_mode: auto}, chat_template: auto, system_prompt: null}
generation: {n: 4, temperature: 1.0, max_new_tokens: 8, batch_size: 512}
verification: {method: tf, threshold: 0.5, batch_size: 512, uncertainty: scored}
training: {lora_rank: 8, lora_alpha: 16.0, lora_dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj,
  gate_proj, up_proj, down_proj], lr: 5e-4, epochs: 2, batch_size: 32, weight_decay: 0.0, engine: torch, mode: lora,
  deepspeed: {zero_stage: 2, micro_batch: null, gradient_clipping: 1.0, precision: fp32, offload_optimizer: false,
  timeout_s: 300.0, ds_config: {}}}
rounds: 2
seed: 0
tracking: {uri: null, experiment: svgap, run_name: null, out_dir: runs}
resources:
  generation: {actors: 2, cpus: 0.5, gpus: 0.0, threads: null, custom: {}}
  verification: {actors: 1, cpus: 0.5, gpus: 0.0, threads: null, custom: {}}
  training: {actors: 1, cpus: 0.5, gpus: 0.0, threads: null, custom: {}}
  placement: PACK
  timeout_s: 600.0
  retries: 3
  colocate_training: auto
fit: {online: true, min_rounds: 4, quantity: total, eps: 0.05}
stop: {when_predicted_gain_below: null}
external: {budget: 0, strategy: none, shares: null, source: workload, gamma: null, warmup_rounds: 4, objective: limit}
"""


def test_an_old_runs_saved_config_still_loads_and_dumps_the_same(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "config.yaml").write_text(OLD_SAVED)
    cfg = config.resolve(saved=folder / "config.yaml")
    assert (cfg.generation.n, cfg.training.lr, cfg.workload.options["digits"]) == (4, 5e-4, 3)
    dumped = config.to_dict(cfg)
    # keys added since (wave 3, issue 25) dump with their defaults; every old key dumps as it was saved
    assert dumped["model"]["vllm"].pop("prefix_caching") is True and dumped["model"]["vllm"].pop("block_size") is None
    assert dumped["resources"].pop("colocate_verification") is False
    assert dumped == yaml.safe_load(OLD_SAVED) | {"training": {**yaml.safe_load(OLD_SAVED)["training"], "lr": 5e-4}}


def test_direct_sections_keep_attribute_access_and_equality():
    cfg = config.resolve()
    assert cfg.generation.n == 8 and cfg.training.learning_rate == 2e-3
    assert cfg.resources.generation == config.PoolResources(actors=2, cpus=0.5)
    assert config.load() == config.from_mapping({}) == config.ExperimentConfig()
    with pytest.raises(ConfigError, match="model.engine: 'tpu' is not an inference engine"):
        config.resolve(overrides=["model.engine=tpu"])
