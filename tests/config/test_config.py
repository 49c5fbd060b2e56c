"""Config: defaults load, YAML round-trip, overrides, and every validation error names its key."""
from __future__ import annotations

import pytest
import yaml

from orchestrator import config
from orchestrator.cli import main
from orchestrator.config.typed import ConfigError


def test_default_config_loads_and_round_trips(tmp_path):
    cfg = config.load()
    text = config.dump(cfg)
    again = config.from_mapping(yaml.safe_load(text))
    assert again == cfg
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    assert config.load(path) == cfg
    assert config.dump(config.load(path)) == text


def test_default_file_equals_the_dataclass_defaults():
    """An installed package without configs/ falls back to the dataclass defaults: they must be the same experiment."""
    assert config.load() == config.from_mapping({})


def test_overrides_apply_with_types():
    cfg = config.load(None, ["generation.n=4", "verification.threshold=0.7", "workload.options.ops=[+, -]",
                             "tracking.run_name=abc", "stop.when_predicted_gain_below=0.01"])
    assert cfg.generation.n == 4
    assert cfg.verification.threshold == 0.7
    assert cfg.workload.options["ops"] == ["+", "-"]
    assert cfg.tracking.run_name == "abc"
    assert cfg.stop.when_predicted_gain_below == 0.01


@pytest.mark.parametrize("override, needle", [
    ("verification.threshold=1.5", "verification.threshold: 1.5 is out of range (allowed [0, 1])"),
    ("verification.threshold=-0.1", "verification.threshold: -0.1 is out of range"),
    ("generation.n=0", "generation.n: 0 is out of range (allowed [1, inf])"),
    ("rounds=0", "rounds: 0 is out of range"),
    ("generation.temperature=0", "generation.temperature: 0.0 is out of range (allowed (0, 10])"),
    ("generation.n=abc", "generation.n: expected an integer, got 'abc'"),
    ("generation.n=2.5", "generation.n: expected an integer"),
    ("verification.method=xyz", "verification.method: 'xyz' is not allowed (choose one of tf, qe)"),
    ("generation.bogus=1", "generation.bogus: unknown key"),
    ("bogus=1", "bogus: unknown key"),
    ("training.lora_rank=0", "training.lora_rank: 0 is out of range"),
    ("resources.generation.actors=0", "resources.generation.actors: 0 is out of range"),
    ("resources.placement=ANY", "resources.placement: 'ANY' is not allowed"),
    ("workload.name=chess", "workload.name: unknown workload 'chess'"),
    ("workload.options.digits=99", "workload.options.digits: 99 is out of range"),
    ("workload.options.ops=[x]", "workload.options.ops: 'x' is not allowed"),
    ("workload.options.bogus=1", "workload.options.bogus: unknown key"),
    ("external.strategy=explicit", "external.shares: required"),
    ("tracking.experiment=[1]", "tracking.experiment: expected a string"),
    ("generation=5", "generation: expected a mapping"),
    ("fit.online=1", "fit.online: expected true or false, got 1"),
    ("seed=null", "seed: expected an integer, got None"),
    ("verification.threshold=.nan", "verification.threshold: must be a finite number, got nan"),
    ("generation.temperature=.inf", "generation.temperature: must be a finite number, got inf"),
    ("model.device=tpu", "model.device: 'tpu' is not allowed (choose one of auto, cpu, cuda)"),
    ("model.dtype=int8", "model.dtype: 'int8' is not allowed (choose one of float32, bfloat16, float16)"),
    ("generation.n.x=3", "--set generation.n.x: n is not a section"),
    ("generation..n=3", "--set 'generation..n=3': empty key part"),
    ("resources.training.cpus=0", "resources.training: cpus and gpus are both 0"),
    ("resources.training.actors=2", "resources.training.actors: 2 ranks need training.engine deepspeed"),
    ("tracking.uri=[x]", "tracking.uri: expected a string"),
])
def test_validation_errors_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        config.load(None, [override])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_external_shares_checked_against_rounds():
    with pytest.raises(ConfigError, match="external.shares: has 2 entries, expected one per training round"):
        config.load(None, ["rounds=3", "external.strategy=explicit", "external.budget=10", "external.shares=[0.5, 0.5]"])
    with pytest.raises(ConfigError, match="sum to 1"):
        config.load(None, ["rounds=2", "external.strategy=explicit", "external.budget=10", "external.shares=[0.5, 0.6]"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config.load(None, ["generation.n"])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation: [1, 2\n  n: :")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="config path is a directory, not a file"):
        config.load(tmp_path)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        config.load(lst)


@pytest.mark.parametrize("argv, needle", [
    (["run", "/nonexistent/x.yaml"], "config file not found"),
    (["run", "--set", "generation.n=0"], "generation.n: 0 is out of range"),
    (["run", "--set", "workload.name=chess"], "unknown workload 'chess'"),
    (["run", "MALFORMED"], "is not valid YAML"),
    (["base-model", "MALFORMED"], "is not valid YAML"),
    (["base-model", "/nonexistent/x.yaml"], "config file not found"),
])
def test_cli_bad_config_is_one_line_exit_2(argv, needle, capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation: [1, 2\n  n: :")
    assert main([str(bad) if a == "MALFORMED" else a for a in argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_partial_section_keeps_the_sections_own_defaults():
    cfg = config.load(None, ["resources.generation.actors=1"])
    assert cfg.resources.generation.actors == 1
    assert cfg.resources.generation.cpus == 0.5  # the section default, not PoolResources' class default
    assert cfg.resources.verification == config.ResourcesConfig().verification


def test_exponent_without_dot_is_a_number(tmp_path):
    assert config.load(None, ["training.lr=5e-4"]).training.lr == 5e-4
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  lr: 1e-3\n")
    assert config.load(p).training.lr == 1e-3
    with pytest.raises(ConfigError, match="training.lr: expected a number, got 'fast'"):
        config.load(None, ["training.lr=fast"])
