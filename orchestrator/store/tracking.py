"""MLflow adapter: the one module that knows MLflow. Only the driver calls it; workers return data.

Credentials in a tracking URI are used but never shown: every message, param and text artifact written through
here passes orchestrator.redact first (MLflow's own MLFLOW_TRACKING_USERNAME / _PASSWORD are the better place)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from orchestrator import redact
from orchestrator.errors import SvgapError
from orchestrator.store.outbox import Outbox
from orchestrator.config.typed import flatten, to_dict

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
# MLflow's http client retries a failed request for minutes by default; a run's driver asks briefly and holds its
# writes while the server is down (outbox.py). The user's own settings of these win.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
_READY_STORES: set[str] = set()


def resolve_uri(uri: str | None = None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    resolved = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    redact.remember(resolved)  # its password is masked wherever it turns up from now on
    redact.remember_env()
    return resolved


def shown(uri: str | None = None) -> str:
    """The resolved URI fit to print or save: credentials masked."""
    return redact.text(resolve_uri(uri))


def _first_line(e: BaseException) -> str:
    return redact.text((str(e).strip().splitlines() or [type(e).__name__])[0][:200])


def _client(uri: str | None):
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" chatter on stderr

    resolved = resolve_uri(uri)
    ensure_store(resolved)
    # MLflow resolves proxied artifact URIs through its global tracking URI; but its setter also exports
    # $MLFLOW_TRACKING_URI, which would make this URI every later command's default in the process (a sweep's
    # driver, the tests): keep the environment as the user set it
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(resolved)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    return MlflowClient(tracking_uri=resolved)


def ensure_store(resolved: str) -> None:
    """A sqlite store is created (its tables migrated) under a file lock, once per process, before first use:
    two runs starting at once on a fresh store must not both migrate it (store_lock.py)."""
    from orchestrator.store.lock import locked, sqlite_path

    db = sqlite_path(resolved)
    if db is None or resolved in _READY_STORES:
        return
    from mlflow.tracking import MlflowClient

    with locked(db):
        try:  # the first read opens the store: SqlAlchemyStore creates the tables when there are none
            MlflowClient(tracking_uri=resolved).search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - e.g. an out-of-date schema: MLflow says what to run
            raise SvgapError(f"tracking store {redact.text(resolved)}: {_first_line(e)}") from None
    _READY_STORES.add(resolved)


def get_run(run_id: str, uri: str | None = None):
    """The MLflow run, or a one-line SvgapError naming the unknown id / unreachable store."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    try:
        return client.get_run(run_id)
    except MlflowException as e:
        code = getattr(e, "error_code", "")
        if "RESOURCE_DOES_NOT_EXIST" in str(code) or "not found" in str(e).lower():
            raise SvgapError(f"unknown MLflow run id {run_id!r} in {shown(uri)}") from None
        raise SvgapError(f"cannot read MLflow run {run_id!r} from {shown(uri)}: {_first_line(e)}") from None
    except Exception as e:  # connection errors from the REST store
        raise SvgapError(f"tracking server {shown(uri)} unreachable: {type(e).__name__}") from None


def run_exists(run_id: str, uri: str | None = None) -> bool:
    """Whether the store holds this run id (a store that cannot be read is an error, not a no)."""
    try:
        get_run(run_id, uri)
    except SvgapError as e:
        if str(e).startswith("unknown MLflow run id"):
            return False
        raise
    return True


def metric_series(run_id: str, names: list[str], uri: str | None = None) -> dict[str, dict[int, float]]:
    """{metric name: {step: value}} for each name that the run logged (absent names are left out)."""
    get_run(run_id, uri)
    client = _client(uri)
    out: dict[str, dict[int, float]] = {}
    for name in names:
        hist = client.get_metric_history(run_id, name)
        if hist:
            out[name] = {int(m.step): float(m.value) for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}
    return out


def log_artifact(run_id: str, path: str | Path, artifact_path: str | None = None, uri: str | None = None) -> None:
    """Attach one file to an existing run."""
    _client(uri).log_artifact(run_id, str(path), artifact_path)


def log_metrics(run_id: str, metrics: dict[str, float], step: int, uri: str | None = None) -> None:
    import time

    from mlflow.entities import Metric

    ts = int(time.time() * 1000)
    ms = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
    if ms:
        _client(uri).log_batch(run_id, metrics=ms)



def preflight(uri: str | None = None) -> str:
    """Check the tracking store is usable before any round starts, without writing anything; returns the URI.

    An http(s) server gets a short health probe (MLflow's own client would retry for minutes); a sqlite file
    needs a writable folder (the database itself is created only when the run starts).
    """
    resolved = resolve_uri(uri)
    show = redact.text(resolved)
    if resolved.startswith(("http://", "https://")):
        _probe_http(resolved, show)
    elif resolved.startswith("sqlite:///"):
        db = Path(resolved.removeprefix("sqlite:///")).expanduser()
        folder = db.parent if str(db.parent) else Path(".")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise SvgapError(f"tracking store {show}: folder {folder} does not exist or is not writable")
        if db.exists() and not os.access(db, os.W_OK):
            raise SvgapError(f"tracking store {show}: {db} is not writable")
    elif resolved.startswith("file:") or ("://" not in resolved and not resolved.startswith("databricks")):
        raise SvgapError(f"tracking store {show}: MLflow 3 refuses the file store by default; use "
                         f"sqlite:///mlflow.db or an http:// tracking server")
    else:  # another database or a hosted store: one read (writes nothing) shows it can be used
        try:
            _client(resolved).search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - driver missing, refused connection, bad credentials, ...
            raise SvgapError(f"tracking store {show} unusable: {_first_line(e)}") from None
    return resolved


def answers(uri: str, timeout: float = 3.0) -> bool:
    """Whether the tracking store answers now (an http server's /health; other stores are taken to answer)."""
    resolved = resolve_uri(uri)
    if not resolved.startswith(("http://", "https://")):
        return True
    try:
        _probe_http(resolved, redact.text(resolved), timeout)
    except SvgapError:
        return False
    return True


def _probe_http(resolved: str, show: str, timeout: float = 5.0) -> None:
    """GET /health with a 5 s timeout. Credentials in the URI (or MLflow's MLFLOW_TRACKING_USERNAME / _PASSWORD)
    go in a basic-auth header, as MLflow's client sends them: urllib cannot take them inside the URL."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import unquote, urlsplit, urlunsplit

    try:
        parts = urlsplit(resolved)
        user, password = parts.username, parts.password
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError as e:  # a bad port, a broken IPv6 literal, ...
        raise SvgapError(f"tracking URI {show} is malformed: {redact.text(str(e))}") from None
    url = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    user = unquote(user) if user is not None else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(password) if password is not None else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    req = urllib.request.Request(url)
    if user is not None or password is not None:
        token = base64.b64encode(f"{user or ''}:{password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if resp.status >= 400:
                raise SvgapError(f"tracking server {show} answered HTTP {resp.status} on /health")
    except urllib.error.HTTPError as e:
        raise SvgapError(f"tracking server {show} answered HTTP {e.code} on /health") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise SvgapError(f"tracking server {show} unreachable: {redact.text(str(reason))}") from None


def run_params(cfg) -> dict:
    """A run's MLflow params: the config as written, plus what a null resolved to (training.lr: null logs as None;
    training.learning_rate is the rate the trainer used)."""
    params = flatten(to_dict(cfg))
    params["training.learning_rate"] = cfg.training.learning_rate
    return params


class RunLogger:
    """One MLflow run (optionally nested under a parent); metrics at step = round.

    Creating the run needs the store; after that every write goes through an Outbox: while an http server does not
    answer, writes are held (with a warning) and sent when it answers again, so the run goes on (outbox.py)."""

    def __init__(self, uri: str | None, experiment: str, run_name: str | None, params: dict,
                 parent_run_id: str | None = None, tags: dict | None = None) -> None:
        from mlflow.entities import Param

        self.uri = resolve_uri(uri)
        self._open_outbox()
        try:  # stores preflight cannot probe (postgresql://, databricks, ...) fail here, before any round
            self.client = _client(self.uri)
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        except Exception as e:  # noqa: BLE001 - any store error becomes one line naming the store
            raise SvgapError(f"tracking store {redact.text(self.uri)}: cannot open experiment {experiment!r}: "
                             f"{_first_line(e)}") from None
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
        self.uri = resolve_uri(uri)
        self._open_outbox()
        run = get_run(run_id, self.uri)  # one line for an unknown id or an unreachable store
        self.client = _client(self.uri)
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        if status is not None:  # `svgap sync` writes to the run without reopening it
            self.client.update_run(run_id, status=status)
        return self

    def _open_outbox(self) -> None:
        if self.uri.startswith(("http://", "https://")):
            for k, v in HTTP_DEFAULTS.items():
                os.environ.setdefault(k, v)
        self.outbox = Outbox(lambda: answers(self.uri), log.warning, redact.text(self.uri))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)  # fixed now: a write sent again later is the same metric (no duplicate step)
        ms = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        if ms:
            self.outbox.send(f"metrics of step {step}", lambda: self.client.log_batch(self.run_id, metrics=ms))

    def log_text(self, text: str, artifact_file: str) -> None:
        text = redact.text(text)
        self.outbox.send(artifact_file, lambda: self.client.log_text(self.run_id, text, artifact_file))

    def log_dict(self, data: dict, artifact_file: str) -> None:
        data = redact.data(data)
        self.outbox.send(artifact_file, lambda: self.client.log_dict(self.run_id, data, artifact_file))

    def log_file(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.outbox.send(str(path), lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def set_tag(self, key: str, value: str) -> None:
        value = redact.text(str(value))
        self.outbox.send(f"tag {key}", lambda: self.client.set_tag(self.run_id, key, value))

    def end(self, status: str = "FINISHED", wait_s: float = 10.0) -> None:
        """End the run; writes still held after wait_s stay in the run folder for `svgap sync`."""
        self.outbox.send(f"status {status}", lambda: self.client.set_terminated(self.run_id, status))
        left = self.outbox.drain(wait_s)
        if left:
            log.warning(f"tracking store {redact.text(self.uri)} still does not answer: {left} write(s) of run "
                        f"{self.run_id} were not sent; everything is in its run folder: send it with "
                        f"`svgap sync RUN_DIR --tracking-uri {redact.text(self.uri)}`")

    def abort(self, error: BaseException) -> None:
        """End the run because of `error`: KILLED for an interrupt, FAILED otherwise."""
        self.end("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED", wait_s=2.0)


def run_metrics(run_id: str, uri: str | None = None) -> dict[str, dict[int, float]]:
    """Every metric of a run as {name: {step: value}} (what the summary table is checked against)."""
    run = get_run(run_id, uri)
    return metric_series(run_id, sorted(run.data.metrics), uri)


def child_runs(parent_run_id: str, uri: str | None = None) -> list:
    """Runs nested under a parent (a sweep or an allocation study)."""
    run = get_run(parent_run_id, uri)
    return _client(uri).search_runs([run.info.experiment_id],
                                    filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def artifact_paths(run_id: str, path: str = "", uri: str | None = None) -> list[str]:
    """All artifact file paths of a run (recursive)."""
    client = _client(uri)
    out: list[str] = []
    for f in client.list_artifacts(run_id, path or None):
        if f.is_dir:
            out.extend(artifact_paths(run_id, f.path, uri))
        else:
            out.append(f.path)
    return out


def artifact_text(run_id: str, path: str, uri: str | None = None) -> str:
    """The text of one artifact file of a run (downloaded to a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="svgap-artifact-") as tmp:
        local = _client(uri).download_artifacts(run_id, path, tmp)
        return Path(local).read_text(errors="replace")


def ui_hint(uri: str | None = None) -> str:
    resolved = shown(uri)
    if resolved.startswith(("http://", "https://")):
        return f"open {resolved} in a browser"
    return f"mlflow ui --backend-store-uri {resolved}   (then open http://127.0.0.1:5000)"


def set_tags(run_id: str, tags: dict[str, str], uri: str | None = None) -> None:
    """Tag an existing run (a study's driver tags a trial's run, e.g. why the theory stopped it)."""
    client = _client(uri)
    for k, v in tags.items():
        client.set_tag(run_id, k, redact.text(str(v)))


def set_status(run_id: str, status: str, uri: str | None = None) -> None:
    """RUNNING again (a restored study's parent run), or FINISHED / FAILED / KILLED."""
    client = _client(uri)
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    else:
        client.set_terminated(run_id, status)
