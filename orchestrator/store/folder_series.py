"""A run folder read back as the series the theory fits: `svgap fit --run FOLDER` decides on exactly what the run's
online fit saw (rounds 0..K, the training rounds that used external data, the external examples still to come after
round K, and whether K was the run's last round), so its stop decision is the run's (run/online_fit.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SvgapError
from orchestrator.store.run_store import RunFiles

COLUMNS = {"total": ("U_s", "U_v"), "per_token": ("U_s_per_token", "U_v_per_token")}


@dataclass
class FolderSeries:
    rounds: list[int]
    U_s: list[float]
    U_v: list[float]
    last_round: bool                           # round K is the run's last (cfg.rounds)
    external_used: list[int] = field(default_factory=list)  # training rounds < K that used external data
    external_pending: int = 0                  # external examples not yet handed out before round K trains
    records: list = field(default_factory=list)  # the RoundRecords 0..K


def is_run_folder(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "rounds").is_dir() and (p / "config.yaml").is_file()


def _config(root: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load((root / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SvgapError(f"run folder {root}: config.yaml is unreadable ({type(e).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), int):
        raise SvgapError(f"run folder {root}: config.yaml has no `rounds`")
    return data


def read_folder(path: str, quantity: str = "total", first: int | None = None) -> FolderSeries:
    """Rounds 0..K of a run folder (K: --first, else its last finished round) and the run's facts at round K."""
    root = Path(path)
    files = RunFiles(root)
    state = files.read_state()
    if state is None:
        raise SvgapError(f"run folder {root}: no round finished yet (no state.json)")
    last = state.last_finished_round if first is None else min(first, state.last_finished_round)
    cs, cv = COLUMNS[quantity]
    records = [files.read_record(t) for t in range(last + 1)]
    missing = [c for c in (cs, cv) if any(c not in r.metrics for r in records)]
    if missing:
        raise SvgapError(f"run folder {root}: round records lack {', '.join(missing)}")
    cfg = _config(root)
    ext = cfg.get("external") or {}
    budget = int(ext.get("budget") or 0) if ext.get("strategy", "none") != "none" else 0
    given = {int(t): int(n) for t, n in ((state.scheduler or {}).get("given") or {}).items()}
    return FolderSeries([r.round for r in records], [r.metrics[cs] for r in records], [r.metrics[cv] for r in records],
                        last >= cfg["rounds"],
                        [r.round for r in records if r.round < last and r.metrics.get("external/eta", 0.0) > 0],
                        budget - sum(n for t, n in given.items() if t < last), records)
