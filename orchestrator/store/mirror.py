"""The MLflow mirror: the only module that writes to a tracking store. The run folder is the source of truth
(store/run_store.py); this mirrors it -- a run's params, metrics, artifacts, tags and status -- and `svgap sync`
replays a folder through the same RunLogger. Every write after the run's creation goes through an Outbox: while the
store fails (down, locked, read-only, full) writes are held on disk and sent later, and the run goes on.

Credentials in a tracking URI are used but never shown: every message, param and text artifact written through
here passes orchestrator.redact first."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from orchestrator import redact
from orchestrator.config.typed import flatten, to_dict
from orchestrator.errors import SvgapError
from orchestrator.store import tracking
from orchestrator.store.outbox import Outbox

log = logging.getLogger(__name__)

# MLflow's http client retries a failed request for minutes by default; a run's driver asks briefly and holds its
# writes while the server is down (outbox.py). The user's own settings of these win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def run_params(cfg) -> dict:
    """A run's MLflow params: the config as written, plus what a null resolved to (training.lr: null logs as None;
    training.learning_rate is the rate the trainer used)."""
    params = flatten(to_dict(cfg))
    params["training.learning_rate"] = cfg.training.learning_rate
    return params


def _warn(msg: str) -> None:
    log.warning(msg)


def _experiment_id(client, experiment: str) -> str:
    """Get or create: drivers starting together on a fresh store race to create the experiment; the losers
    (RESOURCE_ALREADY_EXISTS, or a unique-constraint error from sqlite) read the winner's."""
    exp = client.get_experiment_by_name(experiment)
    if exp:
        return exp.experiment_id
    try:
        return client.create_experiment(experiment)
    except Exception:  # noqa: BLE001 - created by another driver meanwhile? then use it; otherwise the error stands
        exp = client.get_experiment_by_name(experiment)
        if exp:
            return exp.experiment_id
        raise


class RunLogger:
    """One MLflow run (optionally nested under a parent); metrics at step = round.

    Creating the run needs the store; after that every write goes through an Outbox: while the store fails, writes
    are held (with a warning, in the run folder's outbox.json) and sent when it takes them again (outbox.py)."""

    def __init__(self, uri: str | None, experiment: str, run_name: str | None, params: dict,
                 parent_run_id: str | None = None, tags: dict | None = None) -> None:
        from mlflow.entities import Param

        self.uri = tracking.resolve_uri(uri)
        self._open_outbox()
        try:  # stores preflight cannot probe (postgresql://, databricks, ...) fail here, before any round
            self.client = tracking.client(self.uri)
            exp_id = _experiment_id(self.client, experiment)
        except Exception as e:  # noqa: BLE001 - any store error becomes one line naming the store
            raise SvgapError(f"tracking store {redact.text(self.uri)}: cannot open experiment {experiment!r}: "
                             f"{tracking.first_line(e)}") from None
        all_tags = {"mlflow.source.name": "svgap", **(tags or {})}
        if run_name:
            all_tags["mlflow.runName"] = run_name
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        self.run_id = self.client.create_run(exp_id, tags=all_tags, run_name=run_name).info.run_id
        self.experiment_id = exp_id
        items = [Param(k, redact.text(str(v))[:6000]) for k, v in params.items()]
        for s in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[s:s + 100])

    @classmethod
    def reattach(cls, uri: str | None, run_id: str, status: str | None = "RUNNING") -> "RunLogger":
        """Continue an existing run (`svgap run --resume`): the same run id, its status back to RUNNING; params and
        earlier steps are left as they are (resume.py decides which steps still need logging)."""
        self = cls.__new__(cls)
        self.uri = tracking.resolve_uri(uri)
        self._open_outbox()
        run = tracking.get_run(run_id, self.uri)  # one line for an unknown id or an unreachable store
        self.client = tracking.client(self.uri)
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        if status is not None:  # `svgap sync` writes to the run without reopening it
            self.client.update_run(run_id, status=status)
        return self

    def _open_outbox(self) -> None:
        if self.uri.startswith(("http://", "https://")):
            for k, v in HTTP_DEFAULTS.items():
                os.environ.setdefault(k, v)
        self.outbox = Outbox(self._apply, lambda: tracking.answers(self.uri), lambda m: _warn(redact.text(m)),
                             redact.text(self.uri), refused=tracking.refused)

    def keep_outbox(self, folder: Path) -> None:
        """Held writes are kept in the run folder from now on (outbox.json), for a resume or `svgap sync`."""
        self.outbox.keep_in(folder)

    def _apply(self, e: dict) -> None:
        """One outbox entry, written: the only place a run's writes reach MLflow."""
        from mlflow.entities import Metric

        op, c = e["op"], self.client
        if op == "metrics":
            c.log_batch(self.run_id, metrics=[Metric(k, float(v), e["ts"], e["step"]) for k, v in e["metrics"].items()])
        elif op == "text":
            c.log_text(self.run_id, e["text"], e["file"])
        elif op == "dict":
            c.log_dict(self.run_id, e["data"], e["file"])
        elif op == "artifact":
            c.log_artifact(self.run_id, e["path"], e.get("dir"))
        elif op == "tag":
            c.set_tag(self.run_id, e["key"], e["value"])
        elif op == "status":
            c.set_terminated(self.run_id, e["status"])
        else:
            raise SvgapError(f"outbox entry with unknown op {op!r}")

    def replay(self, entries: list[dict]) -> int:
        """Writes a dead driver left in its outbox.json, sent again (`svgap run --resume`, `svgap sync`) -- except
        metrics: the round records are their source, and the caller sends the ones the store lacks from there."""
        rest = [e for e in entries if e.get("op") not in ("metrics", "status")]
        for e in rest:
            self.outbox.send(e)
        return len(rest)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)  # fixed now: a write sent again later is the same metric (no duplicate step)
        ms = {k: float(v) for k, v in metrics.items() if v is not None}
        if ms:
            self.outbox.send({"op": "metrics", "what": f"metrics of step {step}", "step": int(step), "ts": ts,
                              "metrics": ms})

    def log_text(self, text: str, artifact_file: str) -> None:
        self.outbox.send({"op": "text", "what": artifact_file, "text": redact.text(text), "file": artifact_file})

    def log_dict(self, data: dict, artifact_file: str) -> None:
        self.outbox.send({"op": "dict", "what": artifact_file, "data": redact.data(data), "file": artifact_file})

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.outbox.send({"op": "artifact", "what": str(path), "path": str(path), "dir": artifact_path})

    def set_tag(self, key: str, value: str) -> None:
        self.outbox.send({"op": "tag", "what": f"tag {key}", "key": key, "value": redact.text(str(value))})

    def end(self, status: str = "FINISHED", wait_s: float = 10.0) -> None:
        """End the run; writes still held after wait_s stay in the run folder for `svgap sync`."""
        self.outbox.send({"op": "status", "what": f"status {status}", "status": status})
        left = self.outbox.drain(wait_s)
        if left:
            _warn(f"tracking store {redact.text(self.uri)} still takes no writes: {left} write(s) of run "
                  f"{self.run_id} were not sent; everything is in its run folder: send it with "
                  f"`svgap sync RUN_DIR --tracking-uri {redact.text(self.uri)}`")

    def abort(self, error: BaseException) -> None:
        """End the run because of `error`: KILLED for an interrupt, FAILED otherwise."""
        self.end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED", wait_s=2.0)


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None, uri: str | None = None) -> None:
    """Attach one file to an existing run."""
    tracking.client(uri).log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float], step: int, uri: str | None = None) -> None:
    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
    if ms:
        tracking.client(uri).log_batch(run_id, metrics=ms)


def set_tags(run_id: str, tags: dict[str, str], uri: str | None = None) -> None:
    """Tag an existing run (a study's driver tags a trial's run, e.g. why the theory stopped it)."""
    client = tracking.client(uri)
    for k, v in tags.items():
        client.set_tag(run_id, k, redact.text(str(v)))


def set_status(run_id: str, status: str, uri: str | None = None) -> None:
    """RUNNING again (a restored study's parent run), or FINISHED / FAILED / KILLED."""
    client = tracking.client(uri)
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status)
