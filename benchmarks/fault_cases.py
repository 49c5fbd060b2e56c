"""The fault suite's cases (benchmarks/faults.py runs them and prints the table). Every fault is real: a driver killed
with SIGKILL at a named instant (tests/fault_driver.py), actors killed by fault_helpers.py, a node removed from a
ray.cluster_utils.Cluster (tests/node_loss_run.py), an `mlflow server` stopped, a sqlite store locked by another
connection, a 1-byte file-size limit on the driver. Each case reports a Row; metrics are compared with an
uninterrupted run of the same config and seeds (identical values: CPU float32, every seed derived from the round)."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.store import tracking

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
TIMED = re.compile(r"^(time/|mem/|tokens_per_s$)")
ENGINES = {"lora": [], "full": ["training.mode=full"],
           "deepspeed": ["training.engine=deepspeed", "training.mode=full"]}
# where the driver dies: the first log line of each stage boundary of round 1 (store/commit.py names the last two)
BOUNDARIES = {"generation": r"^round 1: generated", "verification": r"^round 1: verified",
              "training": r"^round 1: trained", "weight publish": r"^staged (weights|adapters)/v002",
              "state write": r"^committed round 1 "}


@dataclass
class Row:
    case: str
    faults: int = 0
    runs: int = 1
    finished: int = 0
    redone: int = 0
    lost: int = 0
    duplicates: int = 0
    differ: int = 0  # metric values unlike the uninterrupted run's (timings aside)
    seconds: float = 0.0
    note: str = ""
    ok: bool = field(default=False)

    def done(self, t0: float) -> "Row":
        self.seconds = round(time.monotonic() - t0, 1)
        self.ok = self.finished == self.runs and self.lost == 0 and self.duplicates == 0 and self.differ == 0
        return self

    def json(self) -> dict:
        return asdict(self)


def tiny(out: Path, *extra: str) -> list[str]:
    """3 measured rounds (0..2) of 12 prompts x 2 candidates, one actor per role at 0.25 CPU."""
    kv = ["rounds=2", "workload.train_prompts=12", "workload.heldout_prompts=8", "generation.n=2",
          "training.epochs=1", "fit.online=false", "resources.generation.actors=1",
          "resources.generation.cpus=0.25", "resources.verification.cpus=0.25", "resources.training.cpus=0.25",
          f"tracking.out_dir={out}", *extra]
    return [a for k in kv for a in ("--set", k)]


def svgap(args: list[str], kill_at: str | None = None, env: dict | None = None,
          timeout: float = 900) -> tuple[int, str]:
    """`svgap ARGS` in its own process (through fault_driver.py when kill_at is given): (exit code, output)."""
    cmd = [sys.executable] + ([str(TESTS / "fault_driver.py"), kill_at] if kill_at else ["-m", "orchestrator.cli"])
    proc = subprocess.run(cmd + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}:{TESTS}", "PYTHONUNBUFFERED": "1", **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def run_id_of(text: str) -> str | None:
    m = re.search(r"MLflow run (?:id: )?(\w{32})", text)
    return m.group(1) if m else None


def compare(row: Row, run_id: str, uri: str, ref: dict[str, dict[int, float]]) -> None:
    """Adds to row: (metric, step) pairs of the reference missing, logged twice, or with another value."""
    client = tracking.client(uri)
    for name, want in ref.items():
        hist = client.get_metric_history(run_id, name)
        steps = [m.step for m in hist]
        row.duplicates += len(steps) - len(set(steps))
        row.lost += len(set(want) - set(steps))
        if not TIMED.match(name):
            got = {m.step: m.value for m in hist}
            row.differ += sum(1 for s, v in want.items() if s in got and not _same(got[s], v))


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def finished(run_id: str, uri: str) -> bool:
    return tracking.get_run(run_id, uri).info.status == "FINISHED"


def reference(ctx, engine: str) -> dict[str, dict[int, float]]:
    """The uninterrupted run of an engine's config (made once per suite)."""
    if engine not in ctx.refs:
        rc, text = svgap(["run", "--tracking-uri", ctx.uri, "--address", ctx.address,
                          *tiny(ctx.dir / f"ref-{engine}", *ENGINES[engine])])
        run_id = run_id_of(text)
        if rc != 0 or run_id is None:
            raise RuntimeError(f"reference run of {engine} failed:\n{text[-3000:]}")
        ctx.refs[engine] = tracking.run_metrics(run_id, ctx.uri)
    return ctx.refs[engine]


def kill_and_resume(ctx, engine: str, boundary: str) -> Row:
    """kill -9 of the driver at a stage boundary of round 1, then `svgap run --resume`."""
    t0, row = time.monotonic(), Row(f"kill -9 at {boundary} ({engine})")
    ref = reference(ctx, engine)
    rc, text = svgap(["run", "--tracking-uri", ctx.uri, "--address", ctx.address,
                      *tiny(ctx.dir / f"{engine}-{boundary.replace(' ', '_')}", *ENGINES[engine])],
                     kill_at=BOUNDARIES[boundary])
    run_id = run_id_of(text)
    row.faults = int(rc == -9)
    if rc != -9 or run_id is None:
        row.note = f"not killed (exit {rc}): {text.strip().splitlines()[-1][:120] if text.strip() else ''}"
        return row.done(t0)
    started = max((int(t) for t in re.findall(r"round (\d+): generated", text)), default=-1)
    state = _state(ctx.dir, run_id)
    row.redone = max(0, started - state)
    rc, text = svgap(["run", "--resume", run_id, "--tracking-uri", ctx.uri, "--address", ctx.address])
    if rc != 0:
        row.note = f"resume failed (exit {rc}): {text.strip().splitlines()[-1][:160]}"
        return row.done(t0)
    row.finished = int(finished(run_id, ctx.uri))
    compare(row, run_id, ctx.uri, ref)
    return row.done(t0)


def _state(folder: Path, run_id: str) -> int:
    """last_finished_round of the run's state.json (-1 when none)."""
    for path in folder.glob(f"*/{run_id}/state.json"):
        return int(json.loads(path.read_text())["last_finished_round"])
    return -1


def disk_full(ctx) -> Row:
    """A 1-byte file-size limit on the driver in round 1: the run stops with one line at its last commit; the resume
    (the disk freed) finishes it."""
    t0, row = time.monotonic(), Row("disk full on the driver (RLIMIT_FSIZE)")
    ref = reference(ctx, "lora")
    rc, text = svgap(["run", "--tracking-uri", ctx.uri, "--address", ctx.address, *tiny(ctx.dir / "fsize")],
                     kill_at=r"^round 1: generated", env={"FAULT": "fsize"})
    run_id = run_id_of(text)
    row.faults = int("disk full" in text)
    errors = [x for x in text.splitlines() if x.startswith("svgap: error:")]
    row.note = errors[0][:160] if errors else f"exit {rc}"
    if rc != 2 or run_id is None:
        row.note = f"expected a one-line error, exit 2; got exit {rc}: {text.strip().splitlines()[-1][:120]}"
        return row.done(t0)
    row.redone = max(0, 1 - _state(ctx.dir, run_id))
    rc, text = svgap(["run", "--resume", run_id, "--tracking-uri", ctx.uri, "--address", ctx.address])
    row.finished = int(rc == 0 and finished(run_id, ctx.uri))
    compare(row, run_id, ctx.uri, ref)
    return row.done(t0)
