"""Issue 15 item 4: `svgap allocate` refuses an unwritable out_dir before anything runs; a real verification
actor refuses to score with weights it does not hold."""
from __future__ import annotations

import pytest

import ray  # noqa: F401 - a hard dependency

from orchestrator import config
from orchestrator.cli import main

ALLOCATION = config.DEFAULT_CONFIG.parent / "allocation.yaml"


@pytest.mark.parametrize("out_dir, why", [
    ("/proc/nope", "/proc: "),  # root may write almost anywhere, but not into /proc
    ("FILE/runs", "is not writable"),  # a file where a folder should be
])
def test_allocate_with_unwritable_out_dir_is_one_line_and_makes_no_run(tmp_path, tracking_uri, capsys, out_dir, why):
    (tmp_path / "FILE").write_text("a file")
    uri = tracking_uri
    rc = main(["allocate", str(ALLOCATION), "--set", f"tracking.out_dir={out_dir.replace('FILE', str(tmp_path / 'FILE'))}",
               "--tracking-uri", uri])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("svgap: error: tracking.out_dir: cannot create run folders under ") and why in err, err
    assert err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()  # no parent run, no child run: the store was never opened


def test_stale_version_is_refused_by_a_real_verification_actor(local_ray, base_model_dir, default_workload):
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.group import ActorGroup, PoolSpec, StageError
    from orchestrator.roles.verification import VerificationWorker
    from orchestrator.roles.worker import WorkerSpec

    source = ModelSource("arithmetic", {}, str(base_model_dir), "unused")
    v = ActorGroup(PoolSpec("verification", config.PoolResources(actors=1, cpus=0.5), "PACK", 120.0),
                   VerificationWorker, WorkerSpec("verification", source, "cpu", "float32", 0.5, 1))
    try:
        assert v.call_all("start", "version") == [0]
        p = default_workload.problems("train", 1, seed=0)[0]
        items = [(default_workload.tf_query(p, p.answer), p.prompt, [5, 6])]  # (query, prompt, response ids)
        ok = v.map_shards("verify", "verify", items, 0, "tf", True, 64)  # scores and measures U in one call
        assert len(ok) == 1 and 0.0 <= ok[0][0] <= 1.0 and ok[0][1] > 0
        with pytest.raises(StageError, match=r"stage 'verify' failed on verification\[0\].*verification actor holds "
                                             r"model version 0 but was asked to work with version 1; refusing stale "
                                             r"weights"):
            v.map_shards("verify", "verify", items, 1, "tf", True, 64)
    finally:
        v.shutdown()
