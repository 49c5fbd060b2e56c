"""Ends a vLLM engine's processes when the actor that started them dies without closing them.

vLLM's engine core and its worker run in processes of their own that outlive a parent ended by SIGKILL, os._exit
or the OOM killer (seen here: 11 leaked engines of ~2 GB filled a 24 GB machine). A pool closes its actors before
killing them, but a lost actor (issue 13: OOM, a node's raylet killing it) never gets to. So every engine gets
this small watcher, started in its own session so it outlives the actor: once the actor is gone it kills the
engine's processes; once they are gone it exits.
new_engine_pids names those processes right after the engine started (what the watcher is given).

    python -m orchestrator.engines.vllm_reaper ACTOR_PID ENGINE_PID...
"""
from __future__ import annotations

import subprocess
import sys
import time


def _procs(pids: list[int]) -> list:
    import psutil

    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid))  # remembers its start time: a reused pid is not the same process
        except psutil.Error:
            pass
    return out


def _running(p) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(actor_pid: int, engine_pids: list[int], period_s: float = 1.0) -> int:
    """Returns how many engine processes it had to kill."""
    actor, engine = _procs([actor_pid]), _procs(engine_pids)
    while True:
        engine = [p for p in engine if _running(p)]
        if not engine:
            return 0
        if not actor or not _running(actor[0]):
            for p in engine:
                try:
                    p.kill()
                except Exception:
                    pass
            return len(engine)
        time.sleep(period_s)


def _is_vllm(proc) -> bool:
    try:
        return "VLLM" in proc.name() or any("VLLM" in part for part in proc.cmdline())
    except Exception:  # gone already
        return False


def new_engine_pids(before: set[int], wait_s: float) -> list[int]:
    """This process's descendants titled VLLM::... that were not there before the engine started. Polled for up to
    wait_s: a CI run once found none right after LLM() returned (under load; every other run found the engine core
    at once), and then the reaper had nothing to watch; past wait_s, every new descendant is the engine's."""
    import psutil

    deadline = time.monotonic() + wait_s
    while True:
        new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
        pids = [p.pid for p in new if _is_vllm(p)]
        if pids:
            return pids
        if time.monotonic() >= deadline:  # untitled yet (a full run once saw only `python -B` children): all new
            return [p.pid for p in new]
        time.sleep(0.2)


def start(actor_pid: int, engine_pids: list[int]) -> subprocess.Popen | None:
    """The watcher for one engine, detached from the actor (its own session: a kill of the actor's process group
    does not take it along)."""
    if not engine_pids:
        return None
    return subprocess.Popen([sys.executable, "-m", "orchestrator.engines.vllm_reaper", str(actor_pid),
                             *map(str, engine_pids)], start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(0 if watch(int(sys.argv[1]), [int(a) for a in sys.argv[2:]]) >= 0 else 1)
