"""Training-engine configs: every bad combination is one line naming the key; the global batch is the same whatever
the number of ranks; the capacity check shares the generation bundles only when it must; a run that asks for more
training ranks than the cluster can place, or for a DeepSpeed it cannot import, stops before any round (exit 2)."""
from __future__ import annotations

import pytest

from orchestrator import config

from orchestrator.roles import ray_session
from orchestrator.cli import main
from orchestrator.config.typed import ConfigError

pytestmark = [pytest.mark.deepspeed]


@pytest.mark.parametrize("overrides, needle", [
    (["resources.training.actors=2"], "resources.training.actors: 2 ranks need training.engine deepspeed"),
    (["training.deepspeed.zero_stage=4"], "training.deepspeed.zero_stage: 4 is out of range (allowed [0, 3])"),
    (["training.engine=deepspeed", "training.deepspeed.offload_optimizer=true", "training.deepspeed.zero_stage=0"],
     "training.deepspeed.offload_optimizer: needs zero_stage 1, 2 or 3"),
    (["training.deepspeed.precision=fp16"], "training.deepspeed.precision: 'fp16' is not allowed"),
    (["training.deepspeed.ds_config=3"], "training.deepspeed.ds_config: expected a mapping"),
    (["training.mode=full", "training.lora_rank=4"], "training.lora_rank: a LoRA option, but training.mode is full"),
    (["training.mode=full", "training.target_modules=[q_proj]"], "training.target_modules: a LoRA option"),
    (["training.engine=deepspeed", "resources.training.actors=3"],
     "training.batch_size: 32 is not a multiple of 3 ranks"),
    (["training.engine=deepspeed", "resources.training.actors=2", "training.deepspeed.micro_batch=5"],
     "training.batch_size: 32 is not a multiple of micro_batch 5 x 2 ranks"),
    (["training.engine=jax"], "training.engine: 'jax' is not allowed"),
    (["training.deepspeed.zero_stage=3"], "training.deepspeed: set, but training.engine is torch"),
    (["resources.colocate_training=always", "resources.training.gpus=1"], "resources.colocate_training: always"),
    (["resources.colocate_training=always", "training.engine=deepspeed", "resources.training.actors=4"],
     "resources.colocate_training: always puts one training actor on each generation bundle at most"),
])
def test_bad_training_configs_name_the_key(overrides, needle):
    with pytest.raises(ConfigError) as e:
        config.load(None, overrides)
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("ranks, micro, expect", [(1, None, (32, 1)), (2, None, (16, 1)), (4, None, (8, 1)),
                                                   (2, 4, (4, 4)), (4, 2, (2, 4)), (1, 8, (8, 4))])
def test_global_batch_is_the_same_whatever_the_ranks(ranks, micro, expect):
    cfg = config.load(None, ["training.engine=deepspeed", f"resources.training.actors={ranks}"] +
                      ([f"training.deepspeed.micro_batch={micro}"] if micro else []))
    m, gas = cfg.training.deepspeed.micro_and_accumulation(cfg.training.batch_size, ranks)
    assert (m, gas) == expect and m * gas * ranks == cfg.training.batch_size == 32
    from orchestrator.trainers.deepspeed import ds_config

    d = ds_config(cfg.training, ranks)
    assert d["train_batch_size"] == 32 and d["gradient_accumulation_steps"] == gas
    assert d["zero_optimization"]["stage"] == 2 and d["gradient_clipping"] == 1.0


def test_raw_ds_config_is_merged_last():
    from orchestrator.trainers.deepspeed import ds_config

    cfg = config.load(None, ["training.engine=deepspeed", "training.deepspeed.offload_optimizer=true",
                             "training.deepspeed.ds_config={zero_optimization: {reduce_bucket_size: 1000}, "
                             "gradient_clipping: 0.5}"])
    d = ds_config(cfg.training, 1)
    assert d["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "cpu"}, "reduce_bucket_size": 1000}
    assert d["gradient_clipping"] == 0.5


def test_learning_rate_defaults_per_mode():
    assert config.load().training.learning_rate == 2e-3
    assert config.load(None, ["training.mode=full"]).training.learning_rate == 3e-4
    assert config.load(None, ["training.mode=full", "training.lr=1e-5"]).training.learning_rate == 1e-5


def test_training_shares_the_generation_bundles_only_when_it_must():
    two = {"CPU": 2.0}
    res = lambda *o: config.load(None, list(o)).resources  # noqa: E731
    assert not ray_session.training_colocates(res(), two)  # the default fits: 2 x 0.5 + 0.5 + 0.5
    ds2 = ["training.engine=deepspeed", "resources.training.actors=2"]
    assert ray_session.training_colocates(res(*ds2), two)  # 2.5 CPUs asked: share
    assert not ray_session.training_colocates(res(*ds2), {"CPU": 4.0})  # room for its own bundles
    assert not ray_session.training_colocates(res(*ds2, "resources.colocate_training=never"), two)
    assert ray_session.training_colocates(res("resources.colocate_training=always"), {"CPU": 8.0})
    assert not ray_session.training_colocates(res(*ds2, "resources.training.gpus=1"), {"CPU": 2.0, "GPU": 1.0})
    four = ["training.engine=deepspeed", "resources.training.actors=4"]
    assert not ray_session.training_colocates(res(*four), two)  # more ranks than generation bundles: no


@pytest.mark.parametrize("overrides, needle", [
    (["training.engine=deepspeed", "resources.training.actors=4"],
     "resources: the pools ask for 3.5 CPU (generation 2x0.5, verification 1x0.5, training 4x0.5) but the "
     "cluster has 2"),
    (["training.engine=deepspeed", "resources.training.actors=2", "resources.colocate_training=never"],
     "resources: the pools ask for 2.5 CPU"),
    (["training.engine=deepspeed", "NO_DEEPSPEED"],
     "training.engine deepspeed: the no_such_deepspeed package is not installed (pip install 'svgap[deepspeed]')"),
])
def test_run_refuses_before_any_round(local_ray, base_model_dir, tmp_path, tracking_uri, capsys, monkeypatch,
                                      overrides, needle):
    from orchestrator.config.registry import TRAINERS, Entry

    if "NO_DEEPSPEED" in overrides:
        overrides = [o for o in overrides if o != "NO_DEEPSPEED"]
        monkeypatch.setitem(TRAINERS.builtins, "deepspeed", Entry(TRAINERS.builtins["deepspeed"].target,
                                                                  "no_such_deepspeed", "pip install 'svgap[deepspeed]'"))
    argv = ["run", "--tracking-uri", tracking_uri, "--set", f"model.path={base_model_dir}",
            "--set", f"tracking.out_dir={tmp_path / 'runs'}"]
    for o in overrides:
        argv += ["--set", o]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and sum("error" in line for line in err) == 1, err  # progress lines, then one error
    assert not (tmp_path / "runs").exists()
