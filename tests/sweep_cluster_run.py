"""Run by studies/test_sweep_cluster.py in its own process (the test session may already hold a local Ray driver): a
3-node Ray cluster on this machine (ray.cluster_utils.Cluster, 2 CPUs per node), a 2 x 2 sweep (generation.n x 2
seeds) through the study machinery, where the first generation actor to sample is SIGKILLed (tests/sweep_helpers.py)
and the experiment is told not to replace lost actors (resources.retries=0): its trial fails and Tune's
FailureConfig retries it. Prints one JSON line: the outcomes, the nodes each trial's run was on, the run statuses.

    python tests/sweep_cluster_run.py MODEL_DIR OUT_DIR
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from stores import sqlite_uri


def main() -> int:
    model_dir, out_dir = sys.argv[1], Path(sys.argv[2])
    os.environ["SVGAP_TEST_DIE_ONCE"] = str(out_dir / "died")  # the nodes' workers inherit it
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = here + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, here)
    from ray.cluster_utils import Cluster

    from orchestrator import config

    from orchestrator.store import tracking
    from orchestrator.studies.study import Study, StudySpec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    for _ in range(2):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    uri = sqlite_uri(f"{out_dir}/mlflow.db")
    sets = ["rounds=1", "workload.train_prompts=8", "workload.heldout_prompts=16", "training.epochs=1",
            f"model.path={model_dir}", f"tracking.out_dir={out_dir}/runs", "resources.retries=0",
            "resources.generation.actors=1", "resources.generation.cpus=0.5"]
    data = config.apply_overrides(config.read_yaml(config.DEFAULT_CONFIG), sets)
    try:
        study = Study(StudySpec("sweep", data, {"generation.n": [2, 4]}, seeds=2, max_failures=1),
                      address=cluster.address, tracking_uri=uri, experiment_name="cluster-sweep",
                      worker_classes={"generation": "sweep_helpers:DieOnceGenerationWorker"})
        res = study.run()
        children = tracking.child_runs(res.parent_run_id, uri)
        print(json.dumps({
            "outcomes": [{"label": o.variant.label, "error": o.error, "attempts": o.attempts, "run_id": o.run_id,
                          "rounds": len(o.records)} for o in res.outcomes],
            "runs": [{"name": c.data.tags.get("mlflow.runName"), "status": c.info.status,
                      "node": c.data.tags.get("svgap.node_id"), "trial": c.data.tags.get("svgap.trial_id")}
                     for c in children],
            "died": (out_dir / "died").exists(), "concurrency": res.concurrency,
            "parent_status": tracking.get_run(res.parent_run_id, uri).info.status}), flush=True)
        return 0
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
