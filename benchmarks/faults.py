"""The fault suite (issue 23): every fault a run must survive, injected for real, with what it cost.

    python benchmarks/faults.py [--only kill,actors,node,server,sqlite,disk,many,sweeps] [--engines lora,full,deepspeed]
                                [--boundaries generation,verification,training,"weight publish","state write"]
                                [--kills full:training,lora:"state write",...]
                                [--parallel 8] [--out benchmarks/results/faults.json]

Cases (benchmarks/fault_cases*.py): kill -9 of the driver at each stage boundary of round 1 for each training engine,
then `svgap run --resume`; generation / verification / training actors killed mid-stage; a Ray worker node removed
mid-round; the MLflow server stopped and restarted mid-run; the sqlite store locked mid-run; a full disk (a 1-byte
file-size limit on the driver); N runs at once on one sqlite store and on one server; 3 sweeps at once. Each row:
faults injected, runs finished, rounds redone, metrics lost and logged twice (both must be 0), and metric values
unlike an uninterrupted run with the same seeds (must be 0). Prints the table and writes it as JSON.
The tiny shipped model, one Ray for the suite (drivers join it with --address); ~17 min on 2 idle cores.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "store")]

from benchmarks import fault_cases as kills  # noqa: E402
from benchmarks import fault_cases_more as more  # noqa: E402

log = logging.getLogger("faults")
GROUPS = ("kill", "actors", "node", "server", "sqlite", "disk", "many", "sweeps")
COLUMNS = ("faults", "finished", "redone", "lost", "duplicates", "differ", "seconds")


class Suite:
    def __init__(self, folder: Path, address: str, model_dir: Path) -> None:
        self.dir, self.address, self.model_dir = folder, address, model_dir
        self.uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.refs: dict[str, dict] = {}


def cases(args) -> list:
    pairs = [tuple(k.split(":", 1)) for k in args.kills.split(",")] if args.kills else \
        [(e, b) for e in args.engines.split(",") for b in args.boundaries.split(",")]
    table = {"kill": [(kills.kill_and_resume, pair) for pair in pairs],"actors": (more.actors_killed, ()), "node": (more.node_removed, ()),
             "server": (more.server_restarted, ()), "sqlite": (more.sqlite_locked, ()), "disk": (kills.disk_full, ()),
             "many": [(more.many_runs, (args.parallel, False)), (more.many_runs, (args.parallel, True))],
             "sweeps": (more.sweeps, (3,))}
    out: list = []
    for g in args.only.split(","):  # in the order given
        out += table[g] if isinstance(table[g], list) else [table[g]]
    return out


def table(rows: list[dict]) -> str:
    head = "| case | faults injected | runs finished | rounds redone | metrics lost | duplicates | values unlike " \
           "the uninterrupted run | seconds |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['case']} | {r['faults']} | {r['finished']}/{r['runs']} | {r['redone']} | {r['lost']} | "
                     f"{r['duplicates']} | {r['differ']} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def save(path: str, rows: list[dict], t0: float) -> None:
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - t0), "rows": rows,
           "load_avg": os.getloadavg(), "table": table(rows)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(GROUPS), help=f"case groups: {','.join(GROUPS)}")
    p.add_argument("--engines", default="lora,full,deepspeed")
    p.add_argument("--boundaries", default=",".join(kills.BOUNDARIES))
    p.add_argument("--kills", default="", help="ENGINE:BOUNDARY,... in place of --engines x --boundaries")
    p.add_argument("--parallel", type=int, default=8, help="runs at once on one store")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = p.parse_args()
    from orchestrator import config
    from orchestrator.log import setup_logging
    from orchestrator.models.source import ModelSource

    setup_logging("WARNING")
    logging.getLogger("faults").setLevel(logging.INFO)
    os.environ["PYTHONPATH"] = f"{ROOT}:{ROOT / 'tests'}"  # fault_helpers.py reaches the actors
    import ray

    model_dir = Path(ModelSource.of(config.load()).resolve())
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    rows, t0 = [], time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="svgap-faults-") as tmp:
            suite = Suite(Path(tmp), ray.get_runtime_context().gcs_address, model_dir)
            for fn, a in cases(args):
                try:
                    row = fn(suite, *a)
                except Exception as e:  # noqa: BLE001 - a case that breaks is a row that failed, not a lost suite
                    row = kills.Row(f"{fn.__name__}{a}", note=f"{type(e).__name__}: {str(e)[:200]}")
                rows.append(row.json())
                log.info(f"{row.case}: {'ok' if row.ok else 'FAILED'} in {row.seconds:.0f}s {row.note}")
                save(args.out, rows, t0)  # after every case: a suite stopped midway keeps what it measured
    finally:
        ray.shutdown()
    sys.stdout.write(table(rows) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
