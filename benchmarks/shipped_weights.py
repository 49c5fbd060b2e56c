"""Benchmark/check: does this machine's CPU rebuild the shipped default base model bit for bit?

Rebuilds the default recipe with the project's own `pretrain` (one thread, about 2 minutes on a quiet 2-core
machine) into a temporary cache, and compares it with the weights shipped in workloads/arithmetic/shipped/: the
SHA-256 of model.safetensors, the model fingerprint (orchestrator.engines.weights.base_fingerprint), steps and dev accuracy.
On the machine that shipped them they must match; on another CPU they may not -- which is why they are shipped, and
the table says so plainly. `--write` ships this machine's build instead (after a recipe change). Writes
benchmarks/out/shipped_weights.json.

    python benchmarks/shipped_weights.py [--write] [--from-cache DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(model_dir: Path) -> str:
    from transformers import AutoModelForCausalLM

    from orchestrator.engines.weights import base_fingerprint

    return base_fingerprint(AutoModelForCausalLM.from_pretrained(str(model_dir)))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    import torch

    import workloads
    from orchestrator.config import load
    from workloads.arithmetic import shipped
    from workloads.arithmetic.cache import cached_build

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="ship this machine's build (workloads/arithmetic/shipped/)")
    ap.add_argument("--from-cache", default=None, help="use this already built cache entry instead of rebuilding")
    args = ap.parse_args()
    cfg = load()
    wl = workloads.get(cfg.workload.name, cfg.workload.options)
    recipe = wl.recipe()
    here = {"cpu": cpu_name(), "machine": platform.machine(), "torch": torch.__version__,
            "python": platform.python_version(), "load_avg": os.getloadavg()[0]}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="svgap-rebuild-") as tmp:
        if args.from_cache:
            built = Path(args.from_cache)
        else:  # without the wall-clock cap: on a loaded machine it would fire first and change the weights
            from workloads.arithmetic.workload import ArithmeticWorkload

            uncapped = ArithmeticWorkload(wl.options.model_copy(update={"max_seconds": 86400.0}))
            built = cached_build(tmp, wl.name, uncapped.recipe(),
                                 lambda out: uncapped._build(out, lambda m: print(m, flush=True)))
        seconds = time.perf_counter() - t0
        mine = {"sha256_safetensors": sha(built / "model.safetensors"), "fingerprint": fingerprint(built),
                "build": json.loads((built / "svgap-recipe.json").read_text()).get("build", {})}
        ref = shipped.info()
        theirs = None
        if ref is not None and ref.get("recipe") == recipe:
            theirs = {"sha256_safetensors": sha(shipped.SHIPPED / "model.safetensors"),
                      "fingerprint": ref.get("fingerprint"), "build": ref.get("build", {}),
                      "built_on": ref.get("built_on")}
        same = theirs is not None and theirs["sha256_safetensors"] == mine["sha256_safetensors"]
        if args.write:
            shipped.write(built, recipe, mine["fingerprint"], here)
    rows = [("this machine", mine), ("shipped", theirs or {})]
    print(f"{'':14} {'fingerprint':18} {'safetensors sha256':20} {'steps':>6} {'dev acc':>8}")
    for name, r in rows:
        b = r.get("build", {})
        print(f"{name:14} {str(r.get('fingerprint')):18} {str(r.get('sha256_safetensors'))[:16]:20} "
              f"{str(b.get('steps')):>6} {str(b.get('dev_solver_accuracy')):>8}")
    if theirs is None:
        verdict = "nothing shipped for the default recipe (or the recipe changed): run with --write to ship"
    elif same:
        verdict = "REPRODUCED: this machine rebuilds the shipped weights bit for bit"
    else:
        verdict = (f"DIFFERENT: this CPU ({here['cpu']}) builds other weights from the same recipe than the machine "
                   f"that shipped them ({(theirs.get('built_on') or {}).get('cpu')}); svgap uses the shipped ones, "
                   f"so runs here still start from the same π_0")
    if args.write:
        verdict += "; shipped this machine's build (--write)"
    print(verdict)
    OUT.mkdir(exist_ok=True)
    (OUT / "shipped_weights.json").write_text(json.dumps(
        {"machine": here, "rebuild_seconds": round(seconds, 1), "this_machine": mine, "shipped": theirs,
         "reproduced": same, "verdict": verdict}, indent=2))
    return 0 if same or args.write or theirs is None else 1


if __name__ == "__main__":
    sys.exit(main())
