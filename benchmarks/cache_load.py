"""Benchmark: how fast a cached base model is ready -- the timings that used to be asserts inside tests.

Measures, on the default recipe's cache entry (built first if missing): the cache lookup with its checksum
verification (target < 1.0 s), and `svgap base-model`'s ready + load seconds (target <= 5.0 s). Prints a table and
writes benchmarks/out/cache_load.json. Numbers on a shared machine are noisy: the JSON records the load average.

    python benchmarks/cache_load.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
TARGETS = {"cached_lookup_s": 1.0, "base_model_ready_plus_load_s": 5.0}


def main() -> None:
    import workloads
    from orchestrator.engines.hf import HFBackend
    from orchestrator.config import load

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = load()
    wl = workloads.get(cfg.workload.name, cfg.workload.options)
    cache = Path(cfg.model.cache_dir).expanduser()
    path = wl.base_model(cache)  # build once if needed; not timed
    lookups, ready_load = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        assert wl.base_model(cache) == path
        t1 = time.perf_counter()
        HFBackend(path, device=cfg.model.device, dtype=cfg.model.dtype, threads=cfg.resources.verification.threads)
        t2 = time.perf_counter()
        lookups.append(t1 - t0)
        ready_load.append(t2 - t0)
    got = {"cached_lookup_s": statistics.median(lookups), "base_model_ready_plus_load_s": statistics.median(ready_load)}
    print(f"{'measurement (median of ' + str(args.repeat) + ')':<36}{'seconds':>10}{'target':>10}  ok")
    for k, v in got.items():
        print(f"{k:<36}{v:>10.3f}{TARGETS[k]:>10.1f}  {'ok' if v <= TARGETS[k] else 'MISSED'}")
    OUT.mkdir(exist_ok=True)
    (OUT / "cache_load.json").write_text(json.dumps({
        "model_dir": str(path), "cpus": os.cpu_count(), "load": os.getloadavg(), "repeat": args.repeat,
        "seconds": got, "all_seconds": {"cached_lookup_s": lookups, "base_model_ready_plus_load_s": ready_load},
        "targets": TARGETS, "ok": {k: got[k] <= TARGETS[k] for k in got}}, indent=1))
    print(f"wrote {OUT / 'cache_load.json'}")


if __name__ == "__main__":
    main()
