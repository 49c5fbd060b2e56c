"""Submit an experiment as a Ray job, follow its logs, list / stop jobs -- through Ray's JobSubmissionClient.

The job runs `python -m orchestrator.cli run svgap-job.yaml --address auto` in its working dir on the cluster: the
resolved config travels as that file, the tracking URI and the experiment name as env_vars. Inside a job Ray sets
RAY_ADDRESS (and RAY_AUTH_MODE on a token-auth cluster), so `--address auto` joins the cluster the job runs on.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from orchestrator import redact
from orchestrator.config import ExperimentConfig, dump
from orchestrator.errors import SvgapError
from orchestrator.submission import workdir
from orchestrator.submission.client import Cluster, auth_headers, probe, resolve_address

log = logging.getLogger(__name__)

ENTRYPOINT = f"python -m orchestrator.cli run {workdir.CONFIG_NAME} --address auto"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
POLL_S, GRACE_S = 2.0, 3.0  # following: how often the job's status is asked; how long its last lines may take
SERVER_HELP = "an MLflow server URL the cluster can reach (cluster/local.sh up starts one: http://127.0.0.1:PORT)"


def job_tracking_uri(explicit: str | None, cfg_uri: str | None) -> str:
    """The tracking URI the job logs to: --tracking-uri, else $MLFLOW_TRACKING_URI, else the config's. A relative
    store path would be created in the job's working dir on the head node -- invisible to you -- so it is refused."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or cfg_uri
    if not uri:
        raise SvgapError(f"no tracking URI for the job: MLflow's default sqlite:///mlflow.db would land in the job's "
                         f"working dir on the head node, invisible to you; pass --tracking-uri with {SERVER_HELP}, "
                         f"or set MLFLOW_TRACKING_URI")
    u = urlparse(uri)
    if u.scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        relative = not path.startswith("/")
    elif uri == "databricks":  # MLflow's name for the Databricks workspace of the environment
        relative = False
    elif u.scheme in ("", "file"):
        relative = not (u.path or uri).startswith("/")
    else:
        relative = False
    if relative:
        raise SvgapError(f"tracking URI {uri!r} is a relative path: on a cluster it would be written on the head "
                         f"node's disk (in the job's working dir), invisible to you; use {SERVER_HELP}")
    if u.password or redact.secrets_in(uri):  # user:pass@, a token as user, ?token=, &password=, ...
        raise SvgapError(f"tracking URI {redact.uri(uri)} carries a password or token: a job's env_vars are "
                         f"readable by anyone with dashboard access; set MLFLOW_TRACKING_USERNAME / "
                         f"MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the cluster's environment instead")
    return uri


@dataclass
class Submitted:
    job_id: str
    address: str
    tracking_uri: str
    experiment: str
    upload_bytes: int | None

    @property
    def dashboard(self) -> str:
        return f"{self.address}/#/jobs/{self.job_id}"


def submit(cfg: ExperimentConfig, *, address: str | None, tracking_uri: str | None, experiment: str | None,
           name: str | None, upload: bool = True, root: Path | None = None,
           excludes: list[str] = ()) -> tuple[Cluster, Submitted]:
    """Every check first (tracking URI, address, token, upload size); then one submit_job call."""
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,60}", name):
        raise SvgapError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (at most 61 characters)")
    uri = job_tracking_uri(tracking_uri, cfg.tracking.uri)
    cfg = copy.deepcopy(cfg)
    cfg.tracking.uri = None  # the job reads it from MLFLOW_TRACKING_URI: one source, never a password in the file
    cfg.tracking.experiment = experiment or cfg.tracking.experiment
    if name and not cfg.tracking.run_name:
        cfg.tracking.run_name = name
    probe(resolve_address(address))  # its form and a TCP connect: cheap, so before the working dir is zipped
    auth_headers()  # the token is found (or its absence is fine) -- also before zipping
    work = workdir.stage(dump(cfg), (root or workdir.PROJECT_ROOT) if upload else None, list(excludes))
    try:
        workdir.check_links(work)
        size = workdir.check_size(work) if upload else None
        cluster = Cluster(address)  # checks the token with one authenticated request, before anything is uploaded
        if size is not None:
            log.info(f"uploading the working dir ({workdir.mib(size)} zipped) to {cluster.address}")
        env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": cfg.tracking.experiment,
               "PYTHONUNBUFFERED": "1"}
        job_id = f"{name}-{secrets.token_hex(3)}" if name else None
        meta = {"svgap": "experiment", "experiment": cfg.tracking.experiment, "workload": cfg.workload.name,
                "rounds": str(cfg.rounds), **({"name": name} if name else {})}
        job_id = cluster.call("submitting the job", cluster.client.submit_job, entrypoint=ENTRYPOINT,
                              submission_id=job_id, runtime_env={**work.runtime_env(), "env_vars": env},
                              metadata=meta)
    finally:
        work.remove()
    return cluster, Submitted(job_id, cluster.address, uri, cfg.tracking.experiment, size)


def status(cluster: Cluster, job_id: str) -> str:
    return str(cluster.call(f"job {job_id}", cluster.client.get_job_status, job_id).value)


def wait_terminal(cluster: Cluster, job_id: str, timeout_s: float = 30.0) -> str:
    end = time.monotonic() + timeout_s
    state = status(cluster, job_id)
    while state not in TERMINAL and time.monotonic() < end:
        time.sleep(0.5)
        state = status(cluster, job_id)
    return state


def follow(cluster: Cluster, job_id: str, out: TextIO | None = None, timeout_s: float | None = None) -> str:
    """Stream the job's logs (Ray's tail_job_logs) until the job ends -- or timeout_s has passed (then the job keeps
    running); returns its status. Ray's stream ends with the job; should it not, the job's status ends the wait."""
    out = out or sys.stdout  # the command's (redacting) stdout at call time

    async def tail() -> None:
        async for chunk in cluster.client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    async def ended() -> None:
        while await asyncio.to_thread(status, cluster, job_id) not in TERMINAL:
            await asyncio.sleep(POLL_S)
        await asyncio.sleep(GRACE_S)  # its last lines are still on their way

    async def both() -> bool:
        tasks = [asyncio.ensure_future(tail()), asyncio.ensure_future(ended())]
        done, pending = await asyncio.wait(tasks, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            t.result()  # the stream's own error, if it broke
        return bool(done)

    status(cluster, job_id)  # an unknown id: one line, not a websocket error
    try:
        if not asyncio.run(both()):
            log.warning(f"stopped following {job_id} after {timeout_s:g}s (--timeout); the job keeps running")
            return status(cluster, job_id)
    except SvgapError:
        raise
    except Exception as e:  # the stream broke (head restarted, network): say so, then report the state
        from orchestrator.submission.client import _first

        log.warning(f"log stream of {job_id} ended early: {_first(e)}")
    return wait_terminal(cluster, job_id, timeout_s=60.0)


def message(cluster: Cluster, job_id: str) -> str:
    info = cluster.call(f"job {job_id}", cluster.client.get_job_info, job_id)
    return (info.message or "").strip().splitlines()[-1] if info.message else ""


def stop(cluster: Cluster, job_id: str) -> str:
    cluster.call(f"job {job_id}", cluster.client.stop_job, job_id)
    return wait_terminal(cluster, job_id, timeout_s=30.0)


def listing(cluster: Cluster) -> list:
    jobs = cluster.call("listing jobs", cluster.client.list_jobs)
    return sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)


def logs(cluster: Cluster, job_id: str) -> str:
    return cluster.call(f"job {job_id}", cluster.client.get_job_logs, job_id)
