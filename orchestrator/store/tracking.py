"""The tracking store, read side: which store (URI), is it usable (preflight), and what it holds (runs, metrics,
artifacts). Every write goes through store/mirror.py, the only MLflow writer. Only the driver calls either.

Credentials in a tracking URI are used but never shown: every message, param and text artifact written through
here passes orchestrator.redact first (MLflow's own MLFLOW_TRACKING_USERNAME / _PASSWORD are the better place)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from orchestrator import redact
from orchestrator.errors import SvgapError

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
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


def first_line(e: BaseException) -> str:
    return redact.text((str(e).strip().splitlines() or [type(e).__name__])[0][:200])


def client(uri: str | None):
    """An MLflow client of the store (its tables made under the store lock on first use in this process)."""
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no "creating tables" chatter on stderr
    # a locked or full sqlite store: MLflow logs the traceback, then raises; the outbox reports it in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)

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
            raise SvgapError(f"tracking store {redact.text(resolved)}: {first_line(e)}") from None
    _READY_STORES.add(resolved)


def get_run(run_id: str, uri: str | None = None):
    """The MLflow run, or a one-line SvgapError naming the unknown id / unreachable store."""
    from mlflow.exceptions import MlflowException

    store = client(uri)
    try:
        return store.get_run(run_id)
    except MlflowException as e:
        code = getattr(e, "error_code", "")
        if "RESOURCE_DOES_NOT_EXIST" in str(code) or "not found" in str(e).lower():
            raise SvgapError(f"unknown MLflow run id {run_id!r} in {shown(uri)}") from None
        raise SvgapError(f"cannot read MLflow run {run_id!r} from {shown(uri)}: {first_line(e)}") from None
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
    store = client(uri)
    out: dict[str, dict[int, float]] = {}
    for name in names:
        hist = store.get_metric_history(run_id, name)
        if hist:
            out[name] = {int(m.step): float(m.value) for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}
    return out


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
            client(resolved).search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - driver missing, refused connection, bad credentials, ...
            raise SvgapError(f"tracking store {show} unusable: {first_line(e)}") from None
    return resolved


def refused(error: BaseException) -> bool:
    """The store answered and refused the write as invalid (sending it again cannot succeed), as opposed to a store
    that failed to take it (down, locked, read-only, full: worth holding and sending later)."""
    return "INVALID_PARAMETER_VALUE" in str(getattr(error, "error_code", ""))


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


def run_metrics(run_id: str, uri: str | None = None) -> dict[str, dict[int, float]]:
    """Every metric of a run as {name: {step: value}} (what the summary table is checked against)."""
    run = get_run(run_id, uri)
    return metric_series(run_id, sorted(run.data.metrics), uri)


def child_runs(parent_run_id: str, uri: str | None = None) -> list:
    """Runs nested under a parent (a sweep or an allocation study)."""
    run = get_run(parent_run_id, uri)
    return client(uri).search_runs([run.info.experiment_id],
                                    filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'")


def store_runs(experiment: str | None = None, uri: str | None = None) -> list:
    """Every run of one experiment (by name) or of the whole store, newest first."""
    store = client(uri)
    if experiment is not None:
        exp = store.get_experiment_by_name(experiment)
        if exp is None:
            raise SvgapError(f"tracking store {shown(uri)} has no experiment {experiment!r}")
        ids = [exp.experiment_id]
    else:
        ids = [e.experiment_id for e in store.search_experiments()]
    return store.search_runs(ids, order_by=["attributes.start_time DESC"]) if ids else []


def artifact_paths(run_id: str, path: str = "", uri: str | None = None) -> list[str]:
    """All artifact file paths of a run (recursive)."""
    store = client(uri)
    out: list[str] = []
    for f in store.list_artifacts(run_id, path or None):
        if f.is_dir:
            out.extend(artifact_paths(run_id, f.path, uri))
        else:
            out.append(f.path)
    return out


def artifact_text(run_id: str, path: str, uri: str | None = None) -> str:
    """The text of one artifact file of a run (downloaded to a temporary folder)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="svgap-artifact-") as tmp:
        local = client(uri).download_artifacts(run_id, path, tmp)
        return Path(local).read_text(errors="replace")


def ui_hint(uri: str | None = None) -> str:
    resolved = shown(uri)
    if resolved.startswith(("http://", "https://")):
        return f"open {resolved} in a browser"
    return f"mlflow ui --backend-store-uri {resolved}   (then open http://127.0.0.1:5000)"
