"""Pools shaped by the cluster: `resources.<role>.custom` is validated, enters each placement-group bundle, and a
custom resource no node advertises stops the run before any pool waits for it. Where actors really land on a
shaped multi-node cluster is checked end to end in test_cluster_local.py."""
from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, load
from orchestrator.errors import SvgapError


def test_custom_resources_are_validated_naming_the_key():
    cfg = load(None, ["resources.generation.custom={gen_node: 1}", "resources.training.custom={train_node: 0.5}"])
    assert cfg.resources.generation.custom == {"gen_node": 1.0}
    assert cfg.resources.verification.custom == {}
    for bad, needle in [("{CPU: 1}", "resources.generation.custom.CPU: not a custom resource"),
                        ("{gen_node: 0}", "resources.generation.custom.gen_node: expected a number > 0"),
                        ("{gen_node: many}", "resources.generation.custom.gen_node: expected a number > 0"),
                        ("3", "resources.generation.custom: expected a mapping")]:
        with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
            load(None, [f"resources.generation.custom={bad}"])


def test_custom_resources_enter_the_bundle():
    from orchestrator.roles.group import PoolSpec

    r = load(None, ["resources.generation.custom={gen_node: 1}", "resources.generation.gpus=0.5"]).resources
    assert PoolSpec("generation", r.generation, "PACK", 10.0).bundle() == {"CPU": 0.5, "GPU": 0.5, "gen_node": 1.0}
    assert PoolSpec("verification", r.verification, "PACK", 10.0).bundle() == {"CPU": 0.5}


def test_a_custom_resource_the_cluster_lacks_is_one_line_before_placing(local_ray):
    from orchestrator.roles import ray_session

    r = load(None, ["resources.generation.custom={gen_node: 1}"]).resources
    with pytest.raises(SvgapError, match=r"resources\.generation\.custom\.gen_node: the pool asks for 2 \(2x1\) "
                                         r"but the cluster has 0; its custom resources: none"):
        ray_session.check_capacity(r)
    ray_session.check_capacity(load().resources)  # the default pools ask for none


def test_placement_lines_name_node_and_its_custom_resources():
    from orchestrator.roles.placement import lines

    rep = {"generation": [{"actor": 0, "node_id": "04782d44aa", "address": "10.0.0.5", "custom": {"gen_node": 4.0}}],
           "training": [{"actor": 0, "node_id": "dd3d2200bb", "address": "10.0.0.6", "custom": {}}]}
    assert lines(rep) == ["placement generation: [0] node 04782d44 (10.0.0.5; gen_node=4)",
                          "placement training: [0] node dd3d2200 (10.0.0.6)"]
