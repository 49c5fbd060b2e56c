"""cluster/local.sh keeps its state in a private folder and signals only its own processes (issue 23 item 3).

The attack: another local user pre-creates the cluster folder, or plants a symlink at it, whose pids/ names an
unrelated process; `down` used to kill that process. Here the "unrelated process" is a `sleep` this test starts
(and ends itself); no Ray is started. Each command is refused in one line before anything is signalled."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL_SH = ROOT / "cluster" / "local.sh"


@pytest.fixture
def victim():
    """A process that has nothing to do with any cluster; the test ends it."""
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait(timeout=30)


def _env(home: Path, **extra: str) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "SVGAP_CLUSTER", "XDG_"))}
    return {**base, "HOME": str(home), "SVGAP_PYTHON": sys.executable, **extra}


def _sh(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LOCAL_SH), *args], capture_output=True, text=True, timeout=60, env=env)


def _planted(folder: Path, pid: int, mode: int = 0o700) -> Path:
    """What an attacker leaves: a cluster folder whose pid file names `pid`."""
    (folder / "pids").mkdir(parents=True)
    (folder / "pids" / "head.pid").write_text(f"{pid}\n")
    folder.chmod(mode)
    return folder


def _refused_in_one_line(proc: subprocess.CompletedProcess, needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("cmd", ["down", "up"])
def test_a_symlinked_state_dir_is_refused_and_its_pids_are_not_signalled(tmp_path, victim, cmd):
    real = _planted(tmp_path / "planted", victim.pid)
    link = Path(f"/tmp/svl{os.getpid()}")  # short: `up` checks the length first
    link.symlink_to(real)
    try:
        _refused_in_one_line(_sh(cmd, "--dir", str(link), env=_env(tmp_path)), "is a symbolic link")
    finally:
        link.unlink()
    assert victim.poll() is None, "down signalled a process named by a planted pid file"


def test_a_state_dir_others_can_write_is_refused(tmp_path, victim):
    folder = _planted(tmp_path / "open", victim.pid, mode=0o777)
    _refused_in_one_line(_sh("down", "--dir", str(folder), env=_env(tmp_path)), "writable by other users")
    assert victim.poll() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_state_dir_of_another_user_is_refused(tmp_path, victim):
    folder = _planted(tmp_path / "foreign", victim.pid)
    os.chown(folder, 12345, 12345)
    _refused_in_one_line(_sh("down", "--dir", str(folder), env=_env(tmp_path)), "belongs to uid 12345")
    assert victim.poll() is None


def test_a_pid_file_naming_a_process_without_the_clusters_marker_is_never_signalled(tmp_path, victim):
    """Our own private folder, but a stale or edited pid file (a recycled pid): the process is not ours."""
    folder = _planted(tmp_path / "mine", victim.pid)
    proc = _sh("down", "--dir", str(folder), env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "stopped 0 process(es)" in proc.stderr and proc.stdout.startswith("unset ")
    assert victim.poll() is None


def test_without_a_folder_up_makes_a_private_one_and_records_it(tmp_path):
    """No --dir, no $SVGAP_CLUSTER_DIR, no $XDG_RUNTIME_DIR: a `mktemp -d` (0700, ours), recorded for status/down.
    The interpreter has no Ray, so `up` stops right after making the folder."""
    env = _env(tmp_path / "home", SVGAP_PYTHON="/usr/bin/python3")
    assert _sh("status", env=env).returncode == 3  # nothing recorded yet: not up
    proc = _sh("up", env=env)
    assert proc.returncode == 2 and "lacks ray or mlflow" in proc.stderr, proc.stderr
    record = tmp_path / "home" / ".local" / "state" / "svgap" / "cluster-dir"
    folder = Path(record.read_text().strip())
    try:
        st = folder.lstat()
        assert folder.is_dir() and not folder.is_symlink() and st.st_uid == os.getuid()
        assert st.st_mode & 0o777 == 0o700
        status = _sh("status", env=env)
        assert status.returncode == 3 and str(folder) in status.stderr, status.stderr
        down = _sh("down", "--purge", env=_env(tmp_path / "home"))
        assert down.returncode == 0 and not folder.exists() and not record.exists(), down.stderr
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)
