"""The commit protocol (store/commit.py) at its exact crash points: a real process writing a run folder's full weights
the way a round does is killed with SIGKILL (tests/fault_driver.py) between two steps -- after the new version is
staged, after the pointer switched -- and what it leaves must resume from the last committed state, never lose it."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.store.run_store import RunFiles

HERE = Path(__file__).resolve().parents[1]

# two rounds of full fine-tuning as experiment.py persists them: stage π_{t+1}, commit state.json, retire the old
ROUNDS = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from fault_driver import arm
from orchestrator.engines.weights import FullUpdate, save_update
from orchestrator.store.run_store import RunFiles
arm({pattern!r})
files = RunFiles(__import__("pathlib").Path({root!r}))
for t in range(2):
    save_update(files.root, FullUpdate(t + 1, {{"w": np.full((64, 64), t + 1.0, np.float32)}}))
    files.state(t, t + 1, "run")
"""


def killed_at(tmp_path: Path, pattern: str) -> RunFiles:
    root = tmp_path / "run"
    code = ROUNDS.format(tests=str(HERE), pattern=pattern, root=str(root))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert "SIGKILL at" in proc.stderr, proc.stderr[-2000:]
    return RunFiles(root)


@pytest.mark.parametrize("pattern, committed, on_disk", [
    # π_2 written, state.json still says round 0 / π_1: the old code had deleted v001 here and the run was lost
    ("staged weights/v002.npz", (0, 1), ["v001.npz", "v002.npz"]),
    # the pointer switched to π_2, the old file not yet deleted: a resume starts from π_2
    ("committed round 1", (1, 2), ["v001.npz", "v002.npz"]),
    ("committed round 0", (0, 1), ["v001.npz"]),
])
def test_full_weights_survive_a_kill_between_any_two_steps(tmp_path, pattern, committed, on_disk):
    from orchestrator.engines.weights import FullUpdate

    files = killed_at(tmp_path, pattern)
    state = files.read_state()
    assert (state.last_finished_round, state.model_version) == committed
    assert sorted(p.name for p in (files.root / "weights").iterdir()) == on_disk
    path = files.update_path(state.model_version)  # what `svgap run --resume` loads
    assert path is not None
    saved = FullUpdate.load(path)
    assert saved.version == state.model_version and float(saved.tensors["w"][0, 0]) == state.model_version
    files.remove_partial(state.model_version)  # the resume's clean-up: uncommitted and retired versions go
    assert sorted(p.name for p in (files.root / "weights").iterdir()) == [f"v{state.model_version:03d}.npz"]
    assert not list(files.root.rglob("*.tmp*"))


def test_adapters_are_kept_per_version_and_the_pointer_is_atomic(tmp_path):
    import json

    import numpy as np

    from orchestrator.engines.weights import AdapterUpdate, save_update
    from orchestrator.store import commit

    for v in (1, 2):
        save_update(tmp_path, AdapterUpdate(v, 2.0, {"m": (np.ones((2, 4), np.float32), np.ones((4, 2), np.float32))}))
        commit.commit(tmp_path, {"run_id": "r", "last_finished_round": v - 1, "model_version": v})
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["v001.npz", "v002.npz"]
    assert json.loads((tmp_path / "state.json").read_text())["model_version"] == 2
    assert not list(tmp_path.rglob("*.tmp*"))
