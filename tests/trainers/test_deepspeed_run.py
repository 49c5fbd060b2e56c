"""`svgap run` with 2 DeepSpeed ranks and full fine-tuning on the 2-CPU test Ray: the training ranks share the
generation pool's bundles (2.5 CPUs would not fit), the full weights of π_1 reach every inference actor (version
checked), the sync is logged with its bytes and only the latest full weights stay in the run folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from extras import require  # noqa: E402 - tests/ is on sys.path (pytest rootdir-relative import)

pytestmark = [pytest.mark.deepspeed]
require("deepspeed")


@pytest.mark.slow
def test_deepspeed_full_fine_tuning_run(local_ray, base_model_dir, tmp_path, tracking_uri, said):
    from orchestrator import config
    from orchestrator.store import tracking
    from orchestrator.run.experiment import Experiment
    from orchestrator.engines.weights import FullUpdate

    cfg = config.load(None, [f"model.path={base_model_dir}", f"tracking.out_dir={tmp_path / 'runs'}", "rounds=2",
                             "workload.train_prompts=32", "workload.heldout_prompts=32", "generation.n=4",
                             "training.epochs=1", "training.engine=deepspeed", "resources.training.actors=2",
                             "training.mode=full"])
    res = Experiment(cfg, tracking_uri=tracking_uri).run()
    text = "\n".join(said)
    assert "training x2 shares the generation pool's bundles" in text, text
    assert [r.version for r in res.records] == [0, 1, 2]
    n_weights = sum(a.size for a in FullUpdate.load(res.out_dir / "weights" / "v002.npz").tensors.values())
    for rec in res.records[:2]:
        assert rec.train["sync_bytes"] == 4 * n_weights and rec.timings["sync"] > 0
    assert sorted(p.name for p in (res.out_dir / "weights").iterdir()) == ["v002.npz"]
    assert not list((res.out_dir / "adapters").iterdir())
    saved = json.loads((res.out_dir / "rounds" / "round_001.json").read_text())
    assert saved["train"]["sync_bytes"] == 4 * n_weights
    client = tracking.client(res.tracking_uri)
    hist = client.get_metric_history(res.run_id, "train/sync_bytes")
    assert [m.step for m in hist] == [0, 1] and all(np.isclose(m.value, 4 * n_weights) for m in hist)
    assert [m.step for m in client.get_metric_history(res.run_id, "time/sync")] == [0, 1]
