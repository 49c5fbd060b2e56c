"""The run folder, the source of truth of a run (MLflow mirrors it): what each round leaves behind, and reading it back.

    <out_dir>/<run_id>/
      config.yaml            the resolved config (credentials masked)
      rounds/round_XXX.json  round t's record (RoundRecord.to_json)
      picks/round_XXX.jsonl  round t's training rows (BoN picks + external examples)
      fits/round_XXX.json    the online fit after round t (from fit.min_rounds rounds on)
      adapters/vXXX.npz      π_{t+1} as a LoRA adapter (every version), or weights/vXXX.npz (full; the committed one)
      external/*.json        the scheduler's allocation and plan
      resumes.jsonl          one line per `svgap run --resume` (what it changed)
      state.json             written LAST in a round: the commit point a resume starts from
      outbox.json            tracking writes that failed, until they are sent (store/outbox.py)

Every file is written atomically (store/files.py: tmp + fsync + rename), so a driver killed mid-round leaves the
previous version of each file or the new one, never half of one; `state.json` names the last round whose files are
all written and whose metrics were handed to MLflow, and nothing it names is deleted before a newer state.json is
durable (store/commit.py, the commit protocol). Files are created with the user's umask (no chmod here).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.store import commit
from orchestrator.store.files import FileLock, atomic_write, holder
from orchestrator.store.records import PickRow, RoundRecord

STATE = commit.STATE
LOCK = ".lock"


@dataclass
class RunState:
    """state.json: a resume starts at round `last_finished_round + 1` with model version `model_version`."""
    run_id: str
    last_finished_round: int
    model_version: int
    stop_reason: str | None = None
    scheduler: dict | None = None

    def to_json(self) -> dict:
        out = {"run_id": self.run_id, "last_finished_round": self.last_finished_round,
               "model_version": self.model_version}
        if self.stop_reason is not None:
            out["stop_reason"] = self.stop_reason
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler
        return out


@dataclass
class RunFiles:
    """The run's folder: config, one JSON record and one JSONL of training rows per round, adapters, state."""
    root: Path

    def prepare(self, cfg_text: str) -> None:
        for sub in ("rounds", "picks", "adapters", "fits"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._atomic(self.root / "config.yaml", cfg_text)

    def _atomic(self, path: Path, text: str) -> Path:
        try:
            return atomic_write(path, text)
        except OSError as e:  # a full disk, a file-size limit, a folder gone: the run stops at its last commit
            raise self._cannot(path, e) from None

    def _cannot(self, path: Path, e: OSError) -> SvgapError:
        return SvgapError(f"run folder {self.root}: cannot write {path.relative_to(self.root)} "
                          f"({e.strerror or type(e).__name__}); the run stops at its last committed round "
                          f"(continue it with `svgap run --resume {self.root}`)")

    def picks(self, t: int, rows: list[PickRow]) -> Path:
        return self._atomic(self.root / "picks" / f"round_{t:03d}.jsonl",
                            "".join(json.dumps(asdict(r)) + "\n" for r in rows))

    def record(self, rec: RoundRecord) -> Path:
        return self._atomic(self.root / "rounds" / f"round_{rec.round:03d}.json", json.dumps(rec.to_json(), indent=1))

    def fit(self, t: int, fit: dict) -> Path:
        return self._atomic(self.root / "fits" / f"round_{t:03d}.json", json.dumps(fit, indent=1))

    def external(self, name: str, data: dict) -> Path:
        """external/NAME: a decision of the external-data scheduler (allocation.json, plan.json)."""
        folder = self.root / "external"
        folder.mkdir(parents=True, exist_ok=True)
        return self._atomic(folder / name, json.dumps(data, indent=1))

    def state(self, last_round: int, version: int, run_id: str, stop_reason: str | None = None,
              scheduler: dict | None = None) -> None:
        """Written last in a round, the commit: a resume starts from the round after `last_round` with model
        `version`; only then does the previous full-weights file go (store/commit.py)."""
        try:
            commit.commit(self.root, RunState(run_id, last_round, version, stop_reason, scheduler).to_json())
        except OSError as e:
            raise self._cannot(self.root / STATE, e) from None

    def hold(self) -> None:
        """Lock the run for this driver (`.lock`, flock): released when the process ends, however it ends (kill -9
        too), so a resume can tell a dead driver from a live one."""
        lock = FileLock(self.root / LOCK)
        if not lock.acquire(timeout_s=0):
            raise SvgapError(f"run folder {self.root} is held by another driver ({self.root / LOCK})")
        lock.note(f"pid {os.getpid()}")
        self._lock = lock

    def release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def holder(self) -> str | None:
        """Who holds the run (a live driver's lock note), None when no driver does."""
        return holder(self.root / LOCK)

    def note_resume(self, entry: dict) -> None:
        """Append one line to resumes.jsonl (who resumed from where, with which resource overrides)."""
        with open(self.root / "resumes.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    # ---- reading back (resume, sync) ----
    def read_state(self) -> RunState | None:
        """The committed state, None when no round finished yet; a damaged file is a one-line error."""
        path = self.root / STATE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return RunState(str(data["run_id"]), int(data["last_finished_round"]), int(data["model_version"]),
                            data.get("stop_reason"), data.get("scheduler"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SvgapError(f"run folder {self.root} is incomplete: {STATE} is unreadable "
                             f"({type(e).__name__})") from None

    def read_record(self, t: int) -> RoundRecord:
        path = self.root / "rounds" / f"round_{t:03d}.json"
        try:
            d = json.loads(path.read_text())
            return RoundRecord(int(d["round"]), int(d["version"]), dict(d["metrics"]), dict(d["timings"]),
                               dict(d["counts"]), dict(d.get("train") or {}), list(d.get("heldout") or []))
        except FileNotFoundError:
            raise SvgapError(f"run folder {self.root} is incomplete: {path.relative_to(self.root)} is missing "
                             f"({STATE} says round {t} finished)") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SvgapError(f"run folder {self.root} is incomplete: {path.relative_to(self.root)} is unreadable "
                             f"({type(e).__name__})") from None

    def read_fit(self, t: int) -> dict | None:
        path = self.root / "fits" / f"round_{t:03d}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SvgapError(f"run folder {self.root} is incomplete: {path.relative_to(self.root)} is unreadable "
                             f"({type(e).__name__})") from None

    def update_path(self, version: int) -> Path | None:
        """The saved π_version (adapter or full weights), None when absent."""
        for sub in ("adapters", "weights"):
            p = self.root / sub / f"v{version:03d}.npz"
            if p.is_file():
                return p
        return None

    def remove_partial(self, version: int = 0) -> list[Path]:
        """Temporary files a killed write left behind, and full weights newer than the committed `version` (a round
        killed before its commit: the in-flight round rewrites them and everything else)."""
        gone = [p for p in self.root.rglob("*.tmp*") if p.is_file()]
        for p in gone:
            p.unlink()
        return gone + commit.retire(self.root, version)


class RoundLog:
    """What a round logs to MLflow, held back until the round's files are written, then sent as one batch of metrics
    (one transaction of the store): a driver killed mid-round leaves either all of round t's metrics or none.
    `skip` holds (metric, step) pairs MLflow already has (a resumed round that was logged but not committed),
    so no step is logged twice."""

    def __init__(self, logger, skip: set[tuple[str, int]] | None = None) -> None:
        self.logger, self.skip = logger, skip or set()
        self.metrics: dict[int, dict[str, float]] = {}
        self.dicts: list[tuple[dict, str]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.setdefault(step, {}).update(metrics)

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self.dicts.append((data, artifact_file))

    def flush(self) -> None:
        for data, name in self.dicts:
            self.logger.log_dict(data, name)
        for step, metrics in sorted(self.metrics.items()):
            fresh = {k: v for k, v in metrics.items() if (k, step) not in self.skip}
            if fresh:
                self.logger.log_metrics(fresh, step=step)
        self.metrics.clear()
        self.dicts.clear()

    def __getattr__(self, name):  # set_tag, log_text, ... go straight through
        return getattr(self.logger, name)


def check_writable(path: Path, key: str) -> None:
    """The run folder must be creatable before the MLflow run exists, or a failure would leave a half-logged run."""
    p = path.expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise SvgapError(f"{key}: {p} is a file, not a folder")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise SvgapError(f"{key}: cannot create run folders under {p} ({probe} is not writable)")
    try:  # access() says yes to root even on read-only or virtual file systems (/proc): try it, leave nothing
        os.rmdir(tempfile.mkdtemp(prefix=".svgap-probe-", dir=probe))
    except OSError as e:
        raise SvgapError(f"{key}: cannot create run folders under {p} ({probe}: "
                         f"{e.strerror or type(e).__name__})") from None
