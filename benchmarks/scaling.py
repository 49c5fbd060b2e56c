"""Benchmark: the scaling study (configs/scaling.yaml) on a 3-node ray.cluster_utils.Cluster on this machine.

Starts its own cluster (own temp dir, ports picked free by Ray, 150 MiB object store per node), runs
`svgap sweep configs/scaling.yaml --kind scaling --grid resources.generation.actors=1,2,4` through the study
machinery (one point at a time), prints the scaling table (mean time of each stage per round, generation tokens/s,
speed-up of a round and of generation vs 1 actor) and writes benchmarks/out/scaling.json + scaling.png, with the
machine's load average before and after (the nodes share this machine's cores: on a 2-core machine the speed-up
says where scale-out stops paying *here*, not on a real cluster).

    python benchmarks/scaling.py [--actors 1,2,4] [--nodes 3] [--cpus-per-node 2] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "scaling.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--actors", default="1,2,4")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--cpus-per-node", type=float, default=2.0)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    from ray.cluster_utils import Cluster

    from orchestrator import config
    from orchestrator.studies.study import Study, StudySpec
    from orchestrator.studies.table import SweepSummary
    from orchestrator.studies.variants import parse_grid

    work = Path(tempfile.mkdtemp(prefix="svgap-scaling-"))
    ray_tmp = tempfile.mkdtemp(prefix="svsc", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    load_before = os.getloadavg()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": args.cpus_per_node, "include_dashboard": False, "temp_dir": ray_tmp,
        "object_store_memory": 150 * 1024 * 1024})
    for _ in range(args.nodes - 1):
        cluster.add_node(num_cpus=args.cpus_per_node, object_store_memory=150 * 1024 * 1024)
    cluster.wait_for_nodes()
    t0 = time.time()
    try:
        data = config.apply_overrides(config.read_yaml(CONFIG), [f"tracking.out_dir={work / 'runs'}",
                                                                 *args.overrides])
        summary = SweepSummary("scaling")
        spec = StudySpec("scaling", data, parse_grid([f"resources.generation.actors={args.actors}"]), 1,
                         max_concurrent=1)
        res = Study(spec, address=cluster.address, tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
                    summary=summary).run()
    finally:
        import ray

        ray.shutdown()
        cluster.shutdown()
    load_after = os.getloadavg()
    print(summary.to_markdown(res.table), end="")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} ({os.cpu_count()} cores here; "
          f"{args.nodes} nodes x {args.cpus_per_node:g} CPUs on this one machine)")
    OUT.mkdir(parents=True, exist_ok=True)
    out = {"table": res.table, "nodes": args.nodes, "cpus_per_node": args.cpus_per_node, "cores": os.cpu_count(),
           "load_before": load_before, "load_after": load_after, "seconds": time.time() - t0,
           "overrides": args.overrides, "study_folder": str(res.out_dir)}
    (OUT / "scaling.json").write_text(json.dumps(out, indent=1, default=str))
    png = res.out_dir / "scaling_resources.generation.actors.png"
    if png.exists():
        shutil.copy(png, OUT / "scaling.png")
    print(f"wrote {OUT / 'scaling.json'} and {OUT / 'scaling.png'}")
    return 0 if not any(o.error for o in res.outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
