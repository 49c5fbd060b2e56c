"""Run by trainers/test_deepspeed_cluster.py in its own process (the test session already holds a local Ray driver): a
2-node Ray cluster on this machine (ray.cluster_utils.Cluster) and the training pool as the experiment builds it -- a
rank group of 2 DeepSpeed actors, STRICT_SPREAD, i.e. one per node -- training one round; the torch engine trains the
same round in this process. Prints one JSON line.

    python tests/deepspeed_cluster_run.py MODEL_DIR
"""
from __future__ import annotations

import json
import sys


def main() -> int:
    import numpy as np
    import ray
    import torch
    from ray.cluster_utils import Cluster

    import workloads
    from orchestrator.trainers.lora import TorchTrainer
    from orchestrator.trainers.base import TrainingExample
    from orchestrator.config import DeepSpeedSection, PoolResources, TrainingConfig
    from orchestrator.models.source import ModelSource
    from orchestrator.roles.group import ActorGroup, PoolSpec
    from orchestrator.roles.training import TrainingWorker
    from orchestrator.roles.worker import WorkerSpec

    torch.set_num_threads(1)
    model_dir = sys.argv[1]
    wl = workloads.get("arithmetic", {})
    exs = [TrainingExample(p.prompt, response_text=wl.reference(p), external=True)
           for p in wl.problems("train", 32, seed=5)]
    common = dict(batch_size=16, epochs=1)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    group = None
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        source = ModelSource("arithmetic", {}, model_dir, "~/.cache/svgap")
        group = ActorGroup(PoolSpec("training", PoolResources(actors=2, cpus=1.0), "STRICT_SPREAD", 300.0),
                           TrainingWorker, WorkerSpec("training", source, "cpu", "float32", 1.0, 1),
                           TrainingConfig(engine="deepspeed", deepspeed=DeepSpeedSection(zero_stage=2), **common), 0,
                           ranks=True)
        nodes = group.nodes()
        (stats, up), (_, none) = group.call_all("train", "train", ray.put(exs), 0)
        ref_stats, ref = TorchTrainer(model_dir, TrainingConfig(**common), device="cpu").train(exs, 0)
        diff = max(float(np.abs(up.tensors[k][i] - ref.tensors[k][i]).max()) for k in ref.tensors for i in (0, 1))
        print(json.dumps({"nodes": nodes, "steps": stats.steps, "version": up.version, "rank1_update": none,
                          "loss_diff": abs(stats.loss_last - ref_stats.loss_last), "weight_diff": diff}))
    finally:
        if group is not None:
            group.shutdown()
        ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
