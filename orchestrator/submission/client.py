"""A JobSubmissionClient for a cluster's dashboard address, with Ray's token auth honoured as Ray's tools do.

Token: the one Ray's own loader finds -- $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token --
sent as `Authorization: Bearer`. As `ray start` does, a token that exists is used when $RAY_AUTH_MODE is unset;
RAY_AUTH_MODE=token requires one; RAY_AUTH_MODE=disabled sends none (svgap never turns auth off by itself). An
Authorization header in $RAY_JOB_HEADERS (Ray's job CLI's variable) wins over all of these.
Every failure is one line naming the address and what to do (SvgapError), before anything is submitted.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlparse

from orchestrator.errors import SvgapError

T = TypeVar("T")
TOKEN_HELP = ("set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to the cluster's token file (cluster/local.sh up prints "
              "it), or put the token in ~/.ray/auth_token")


@dataclass(frozen=True)
class Token:
    value: str | None
    source: str  # where it came from, for messages (never the value itself)


def resolve_address(address: str | None) -> str:
    """The dashboard URL (http[s]://HOST:PORT) from --address or $RAY_ADDRESS, checked for form."""
    addr = address or os.environ.get("RAY_ADDRESS")
    if not addr:
        raise SvgapError("no Ray cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS (the dashboard's "
                         "URL; cluster/local.sh up prints it)")
    u = urlparse(addr)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise SvgapError(f"Ray address {addr!r}: expected the dashboard's URL http://HEAD:8265 (jobs are submitted "
                         f"to the dashboard, not to the GCS port or ray://)")
    try:
        u.port
    except ValueError:
        raise SvgapError(f"Ray address {addr!r}: the port is not a number") from None
    return addr.rstrip("/")


def probe(address: str, timeout: float = 5.0) -> None:
    """A TCP connect with a timeout: Ray's client would otherwise wait on an unreachable host without one."""
    u = urlparse(address)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise SvgapError(f"Ray dashboard at {address} unreachable: {e.strerror or type(e).__name__} (is the cluster "
                         f"up? cluster/local.sh status)") from None


def find_token() -> Token:
    """The token Ray's own loader would use, and where it came from."""
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    if mode == "disabled":
        return Token(None, "RAY_AUTH_MODE=disabled")
    if os.environ.get("RAY_AUTH_TOKEN"):
        source = "RAY_AUTH_TOKEN"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        source = f"RAY_AUTH_TOKEN_PATH ({os.environ['RAY_AUTH_TOKEN_PATH']})"
    else:
        source = "~/.ray/auth_token"
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # the environment may have changed since the last call in this process
    try:
        if loader.has_token(ignore_auth_mode=True):
            return Token(loader.get_raw_token(ignore_auth_mode=True), source)
    except AuthenticationError as e:  # e.g. RAY_AUTH_TOKEN_PATH names a missing or empty file
        raise SvgapError(f"Ray auth token: {str(e).split('. ')[0]}") from None
    finally:  # the loader is process-wide: leave nothing cached for a Ray started later in this process
        loader.reset_cache()
    if mode == "token":
        raise SvgapError(f"RAY_AUTH_MODE=token but no Ray auth token found: {TOKEN_HELP}")
    return Token(None, "none found")


def auth_headers() -> tuple[dict[str, str], Token]:
    """Headers for every request: $RAY_JOB_HEADERS (as `ray job` reads them) plus the bearer token."""
    headers: dict[str, str] = {}
    raw = os.environ.get("RAY_JOB_HEADERS")
    if raw:
        try:
            headers = {str(k): str(v) for k, v in json.loads(raw).items()}
        except (ValueError, AttributeError):
            raise SvgapError('RAY_JOB_HEADERS: expected a JSON object, e.g. {"X-Header": "value"}') from None
    given = [v for k, v in headers.items() if k.lower() == "authorization"]
    if given:
        return headers, Token(given[0], "RAY_JOB_HEADERS")
    token = find_token()
    if token.value:
        headers["Authorization"] = f"Bearer {token.value}"
    return headers, token


def _quiet_ray() -> None:
    """Ray's job client logs each packaging step and the closing websocket at INFO; svgap says what matters."""
    import logging

    from orchestrator.submission.ray_adapter import PACKAGING_LOGGERS

    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk", *PACKAGING_LOGGERS):
        logging.getLogger(name).setLevel(logging.WARNING)


class Cluster:
    """One cluster's job server; every call's failure becomes a one-line SvgapError."""

    def __init__(self, address: str | None) -> None:
        from ray.exceptions import AuthenticationError
        from ray.job_submission import JobSubmissionClient

        _quiet_ray()
        self.address = resolve_address(address)
        probe(self.address)
        headers, self.token = auth_headers()
        try:  # the client asks the server's version at once: an authenticated request, so the token is checked here
            self.client = JobSubmissionClient(self.address, headers=headers)
        except AuthenticationError as e:
            raise SvgapError(self._auth_message(e)) from None
        except Exception as e:
            raise SvgapError(f"cannot reach the Ray job server at {self.address}: {_first(e)}") from None

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        from ray.exceptions import AuthenticationError

        try:
            return fn(*args, **kwargs)
        except AuthenticationError as e:
            raise SvgapError(self._auth_message(e)) from None
        except SvgapError:
            raise
        except Exception as e:
            text = _first(e)
            if "status code 404" in text or "does not exist" in text:
                raise SvgapError(f"{what}: not found on the Ray cluster at {self.address} ({text})") from None
            raise SvgapError(f"{what} failed on the Ray cluster at {self.address}: {text}") from None

    def _auth_message(self, e: Exception) -> str:
        text = str(e)
        if self.token.value and (text.startswith("Authentication failed") or "Invalid" in text or "403" in text):
            return (f"the Ray cluster at {self.address} rejected the auth token from {self.token.source} (invalid "
                    f"token): use that cluster's token ({TOKEN_HELP})")
        return (f"the Ray cluster at {self.address} requires token auth but no token was sent "
                f"({self.token.source}): {TOKEN_HELP}")


def _first(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
