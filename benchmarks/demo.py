"""Benchmark: the default experiment end to end (what `make demo` runs), cold and/or warm model cache.

Prints one line per measurement and writes benchmarks/out/demo.json: wall seconds of the whole `svgap run`
(Ray start, pools, rounds, logging), per-round seconds and held-out accuracy per round.

    python benchmarks/demo.py [--cold] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from orchestrator import config
from orchestrator.run.experiment import Experiment

OUT = Path(__file__).resolve().parent / "out"


def one_run(overrides: list[str], label: str) -> dict:
    cfg = config.load(None, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = Experiment(cfg, tracking_uri=f"sqlite:///{tmp}/mlflow.db").run()
        wall = time.perf_counter() - t0
    recs = res.records
    out = {
        "label": label, "wall_s": round(wall, 1), "rounds": len(recs) - 1,
        "round_s": [round(r.timings["round"], 2) for r in recs],
        "heldout_acc": [round(r.metrics["heldout_acc"], 4) for r in recs],
        "U_s": [round(r.metrics["U_s"], 4) for r in recs], "U_v": [round(r.metrics["U_v"], 4) for r in recs],
        "G": [round(r.metrics["G"], 4) for r in recs],
        "heldout_gain_points": round(100 * (recs[-1].metrics["heldout_acc"] - recs[0].metrics["heldout_acc"]), 1),
        "U_v_below_U_s_every_round": all(r.metrics["U_v"] < r.metrics["U_s"] for r in recs),
        "U_s_fell": recs[-1].metrics["U_s"] < recs[0].metrics["U_s"],
        "G_fell": recs[-1].metrics["G"] < recs[0].metrics["G"],
    }
    print(json.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true", help="also run once with an empty model cache")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    results = []
    if args.cold:
        with tempfile.TemporaryDirectory() as cache:
            results.append(one_run(args.overrides + [f"model.cache_dir={cache}"], "cold cache"))
    results.append(one_run(args.overrides, "warm cache"))
    OUT.mkdir(exist_ok=True)
    (OUT / "demo.json").write_text(json.dumps({"cpus": os.cpu_count(), "load": os.getloadavg(),
                                              "runs": results}, indent=1))
    print(f"wrote {OUT / 'demo.json'}")


if __name__ == "__main__":
    from orchestrator.log import setup_logging

    setup_logging()  # the runs' progress lines on stderr
    main()
