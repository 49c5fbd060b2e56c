"""A model version between the object store and the run folder by reference (run/update_refs.py): tasks on the
driver's node write and read it; the driver gets back only a path, a version, or a reference. Real local Ray."""
from __future__ import annotations

import numpy as np
import pytest
import ray

from orchestrator.engines.weights import AdapterUpdate
from orchestrator.errors import SvgapError
from orchestrator.run import update_refs


def _update(version: int) -> AdapterUpdate:
    rng = np.random.default_rng(version)
    return AdapterUpdate(version, 2.0, {"layer.q_proj": (rng.normal(size=(2, 8)), rng.normal(size=(8, 2)))})


def test_save_then_load_by_reference(local_ray, tmp_path):
    ref = ray.put(_update(3))
    path = update_refs.save(tmp_path, ref, 60.0)
    assert path == tmp_path / "adapters" / "v003.npz" and path.is_file()
    loaded = update_refs.load(path, 3, 60.0)
    assert isinstance(loaded, ray.ObjectRef)
    back = ray.get(loaded)  # the test looks; the experiment only hands the reference on
    np.testing.assert_array_equal(back.tensors["layer.q_proj"][1], _update(3).tensors["layer.q_proj"][1])


def test_broken_or_wrong_saved_version_is_one_line(local_ray, tmp_path):
    (tmp_path / "v001.npz").write_bytes(b"")
    with pytest.raises(SvgapError, match=r"^cannot read the saved model version .*v001.npz") as e:
        update_refs.load(tmp_path / "v001.npz", 1, 60.0)
    assert "\n" not in str(e.value)
    path = update_refs.save(tmp_path, ray.put(_update(2)), 60.0)
    with pytest.raises(SvgapError, match=r"holds version 2, expected 5"):
        update_refs.load(path, 5, 60.0)
