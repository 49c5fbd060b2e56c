"""Run by roles/test_faults_node.py in its own process (the test session holds a local Ray driver already): a 3-node Ray
cluster on this machine (ray.cluster_utils.Cluster: a head and two workers, 1 CPU each), a tiny experiment whose
generation actors are SPREAD; when round 0 has generated, the worker node holding a generation actor is removed
(its raylet killed: the node is gone, as a preempted machine is). Prints one JSON line with what happened.

    python tests/node_loss_run.py MODEL_DIR OUT_DIR [--keep]

--keep removes no node: the uninterrupted run of the same config, which the fault suite compares metrics against.
"""
from __future__ import annotations

import json
import logging
import sys
from stores import sqlite_uri


def main() -> int:
    import ray
    from ray.cluster_utils import Cluster

    from orchestrator import config
    from orchestrator.errors import SvgapError
    from orchestrator.log import setup_logging
    from orchestrator.run.experiment import Experiment

    model_dir, out_dir, keep = sys.argv[1], sys.argv[2], "--keep" in sys.argv[3:]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    lines: list[str] = []
    removed: list[str] = []

    class RemoveNode(logging.Handler):
        """Reads svgap's log lines (which also go to stderr): once round 0 has generated, a generation node goes."""

        def emit(self, record: logging.LogRecord) -> None:
            msg = record.getMessage()
            lines.append(msg)
            if msg.startswith("round 0: generated") and not removed and not keep:
                gen_nodes = {n for pg in ray.util.placement_group_table().values()
                             if pg.get("name") == "svgap-generation" for n in pg.get("bundles_to_node_id", {}).values()}
                victim = next(w for w in workers if w.node_id in gen_nodes)
                removed.append(victim.node_id)
                cluster.remove_node(victim, allow_graceful=False)

    setup_logging("INFO")
    logging.getLogger().addHandler(RemoveNode())
    cfg = config.load(None, ["workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2",
                             "rounds=1", "training.epochs=1", "fit.online=false", f"model.path={model_dir}",
                             f"tracking.out_dir={out_dir}/runs", "resources.placement=SPREAD",
                             "resources.colocate_training=never", "resources.timeout_s=240"])
    out = {"removed": removed}
    try:
        res = Experiment(cfg, address=cluster.address, tracking_uri=sqlite_uri(f"{out_dir}/mlflow.db")).run()
        out.update(finished=True, rounds=[r.round for r in res.records], counts=[r.counts for r in res.records],
                   run_id=res.run_id)
    except SvgapError as e:
        out.update(finished=False, error=str(e))
    finally:
        ray.shutdown()
        cluster.shutdown()
    out["lines"] = [ln for ln in lines if "lost" in ln or "re-place" in ln]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
