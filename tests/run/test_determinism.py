"""Determinism on every machine (issue 13 item 6): the same config and seed give the same round metrics whatever the
number of generation actors (real Ray, real models, CPU float32), and the default base model is the one shipped with
the package -- the same π_0 on every machine -- while other recipes still build locally."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from orchestrator import config

from orchestrator.store import tracking
from orchestrator.errors import SvgapError
from orchestrator.run.experiment import Experiment
from workloads.arithmetic import shipped

TIMED = re.compile(r"^(time/|mem/|tokens_per_s$)")  # wall-clock numbers differ by design


@pytest.mark.slow
def test_one_or_two_generation_actors_give_identical_metrics(local_ray, base_model_dir, tmp_path, tracking_uri):
    """Two rounds with training between them: every metric (the timings aside), every BoN pick with its
    uncertainty and every trained adapter, bit for bit, whatever the sharding. This needs the engine to batch
    candidates of one length together (engines/hf.py): with mixed lengths a row's last bits depended on its
    batch-mates (U differed by up to 3e-6 per candidate between 1 and 2 actors)."""
    uri = tracking_uri
    runs = {}
    for actors in (1, 2):
        cfg = config.load(None, ["workload.train_prompts=24", "workload.heldout_prompts=24", "generation.n=4",
                                 "rounds=2", "training.epochs=1", f"model.path={base_model_dir}",
                                 f"tracking.out_dir={tmp_path / 'runs'}", f"resources.generation.actors={actors}"])
        runs[actors] = Experiment(cfg, tracking_uri=uri).run()
    one, two = (tracking.run_metrics(runs[a].run_id, uri) for a in (1, 2))
    assert set(one) == set(two)
    compared = [k for k in one if not TIMED.match(k)]
    assert {"U_s", "U_v", "G", "acc_s", "heldout_acc", "train/loss_last"} <= set(compared)
    for k in compared:
        assert one[k] == two[k], k
    for t in range(3):  # the same candidates picked, with the same responses, in every round
        rows = [[json.loads(x) for x in (runs[a].out_dir / "picks" / f"round_{t:03d}.jsonl").read_text().splitlines()]
                for a in (1, 2)]
        key = [[(r["problem_id"], r["response"], r["correct"], r["fallback"]) for r in rr] for rr in rows]
        assert key[0] == key[1], t
        assert [r["nll"] for r in rows[0]] == [r["nll"] for r in rows[1]], t
    for v in (1, 2):  # trained on the same tokens: the same adapters
        a, b = (np.load(runs[x].out_dir / "adapters" / f"v{v:03d}.npz") for x in (1, 2))
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"v{v} {name}")


def test_default_base_model_is_the_shipped_one(default_workload, tmp_path, said):
    """The default recipe resolves to the shipped weights (copied into the cache, checksum verified), whose
    fingerprint is the recorded one; nothing is pretrained."""
    from safetensors.torch import load_file

    from orchestrator.engines.weights import base_fingerprint

    data = shipped.info()
    assert data is not None, "workloads/arithmetic/shipped/ is missing"
    assert data["recipe"] == default_workload.recipe(), (
        "the default recipe changed but the shipped weights did not: rebuild and reship them with "
        "`python benchmarks/shipped_weights.py --write`")
    assert (shipped.SHIPPED / "model.safetensors").stat().st_size < 2_000_000  # small enough to ship
    path = default_workload.base_model(tmp_path / "cache")
    assert any("ship with svgap" in m for m in said) and not any("pretraining" in m for m in said), said
    assert (path / "model.safetensors").read_bytes() == (shipped.SHIPPED / "model.safetensors").read_bytes()
    # the fingerprint every actor checks (weights.check_same_base), from the file's tensors (= the model's parameters)
    assert base_fingerprint(load_file(path / "model.safetensors")) == data["fingerprint"]
    said.clear()
    assert default_workload.base_model(tmp_path / "cache") == path
    assert any("cached" in m for m in said)


def test_a_local_build_of_the_default_recipe_is_not_taken_for_the_shipped_one(default_workload, tmp_path):
    """A cache that already holds this machine's own build of the default recipe (other weights on another CPU)
    still gives the shipped weights: they have their own cache key."""
    from workloads.arithmetic.cache import cached_build

    def fake_local_build(out):
        for f in shipped.SHIPPED.iterdir():
            if f.name != "svgap-recipe.json":
                shutil.copyfile(f, out / f.name)
        (out / "model.safetensors").write_bytes(b"other weights")
        return {}

    local = cached_build(tmp_path, "arithmetic", default_workload.recipe(), fake_local_build)
    path = default_workload.base_model(tmp_path)
    assert path != local
    assert (path / "model.safetensors").read_bytes() == (shipped.SHIPPED / "model.safetensors").read_bytes()


def test_a_damaged_shipped_copy_is_refused_and_other_recipes_are_not_shipped(default_workload, tmp_path):
    copy = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED, copy)
    assert shipped.shipped_model(default_workload.recipe(), copy) == copy
    other = {**default_workload.recipe(), "options": {**default_workload.recipe()["options"], "seed": 1}}
    # built locally (tests/workloads/test_arithmetic.py covers the build)
    assert shipped.shipped_model(other, copy) is None
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(SvgapError, match="does not match its recorded SHA-256"):
        shipped.shipped_model(default_workload.recipe(), copy)
