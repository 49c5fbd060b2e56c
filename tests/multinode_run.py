"""Run by roles/test_multinode.py in its own process (the test session already holds a local Ray driver): a 2-node Ray
cluster on this machine (ray.cluster_utils.Cluster: one raylet per node), a tiny `svgap run --address` with SPREAD
placement; prints the progress lines and exits with svgap's return code.

    python tests/multinode_run.py MODEL_DIR OUT_DIR
"""
from __future__ import annotations

import sys
from stores import sqlite_uri


def main() -> int:
    from ray.cluster_utils import Cluster

    from orchestrator.cli import main as svgap

    model_dir, out_dir = sys.argv[1], sys.argv[2]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        return svgap(["run", "--address", cluster.address, "--tracking-uri", sqlite_uri(f"{out_dir}/mlflow.db"),
                      "--set", "resources.placement=SPREAD", "--set", f"model.path={model_dir}",
                      "--set", f"tracking.out_dir={out_dir}/runs", "--set", "rounds=1",
                      "--set", "workload.train_prompts=32", "--set", "workload.heldout_prompts=64",
                      "--set", "generation.n=4", "--set", "training.epochs=1"])
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
