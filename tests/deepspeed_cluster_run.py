"""Run by test_deepspeed_cluster.py in its own process (the test session already holds a local Ray driver): a 2-node
Ray cluster on this machine (ray.cluster_utils.Cluster), and `svgap run --address` with 2 DeepSpeed training ranks
placed STRICT_SPREAD, i.e. one per node, for one training round; prints the progress lines, exits with svgap's code.

    python tests/deepspeed_cluster_run.py MODEL_DIR OUT_DIR
"""
from __future__ import annotations

import sys


def main() -> int:
    from ray.cluster_utils import Cluster

    from orchestrator.cli import main as svgap

    model_dir, out_dir = sys.argv[1], sys.argv[2]
    # 2 logical CPUs per node: the training pool gets bundles of its own on both nodes (no colocation)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        return svgap(["run", "--address", cluster.address, "--tracking-uri", f"sqlite:///{out_dir}/mlflow.db",
                      "--set", "resources.placement=STRICT_SPREAD", "--set", f"model.path={model_dir}",
                      "--set", f"tracking.out_dir={out_dir}/runs", "--set", "rounds=1",
                      "--set", "workload.train_prompts=32", "--set", "workload.heldout_prompts=32",
                      "--set", "generation.n=4", "--set", "training.epochs=1",
                      "--set", "training.engine=deepspeed", "--set", "resources.training.actors=2",
                      "--set", "resources.colocate_training=never"])
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
