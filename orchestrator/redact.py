"""Credentials never leave the process: every URI that is printed, logged or saved goes through here first.

A tracking URI may carry a password (`http://user:pw@host`, `postgresql://u:pw@db/mlflow`, `...?password=pw`).
MLflow itself reads `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` for auth, which is where credentials
belong; when they are given in the URI anyway, the run still uses them, but params, artifacts, the run folder,
progress and error lines show `***` in their place. Secrets seen in URIs are remembered (`remember`) so that a
library message quoting one on its own (e.g. "password authentication failed for 's3cr3t'") is cleaned too.
"""
from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import unquote

MASK = "***"
# scheme://userinfo@  -- userinfo has no '/', '@' or whitespace
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# ?password=... &token=... &sslpassword=... (query values whose key names a secret)
_QUERY = re.compile(r"(?P<key>[?&;][^=&;#\s'\"]*(?:pass|secret|token|auth|cred|key)[^=&;#\s'\"]*=)"
                    r"(?P<value>[^&;#\s'\"]+)", re.IGNORECASE)
_known: set[str] = set()
_lock = threading.Lock()


def _mask_userinfo(m: re.Match) -> str:
    user, sep, _pw = m.group("userinfo").partition(":")
    # user:pw -> user:***; a lone user part may itself be a token (https://TOKEN@host) -> ***
    return m.group("scheme") + (f"{user}:{MASK}" if sep else MASK) + "@"


def secrets_in(text: str) -> list[str]:
    """The passwords / tokens that `text` carries in URIs (raw and percent-decoded)."""
    found: list[str] = []
    for m in _USERINFO.finditer(text):
        user, sep, pw = m.group("userinfo").partition(":")
        if sep:
            found.append(pw)
        elif len(user) >= 16:  # a lone user part this long is a token; a short one ("mlflow@host") a name
            found.append(user)
    found += [m.group("value") for m in _QUERY.finditer(text)]
    out = []
    for s in found:
        for v in (s, unquote(s)):
            if len(v) >= 3 and v != MASK and v not in out:  # shorter strings would mask innocent text
                out.append(v)
    return out


def remember(text: str | None) -> None:
    """Note the secrets of a URI the process uses, so they are masked wherever they turn up later."""
    if text:
        with _lock:
            _known.update(secrets_in(text))


def remember_env() -> None:
    """MLflow's own credential variables and Ray's auth token: their values are secrets too."""
    import os

    with _lock:
        for var in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "RAY_AUTH_TOKEN"):
            v = os.environ.get(var, "")
            if len(v) >= 3:
                _known.add(v)


def text(s: str) -> str:
    """`s` with every credential in a URI, and every remembered secret, replaced by ***."""
    if not s:
        return s
    out = _QUERY.sub(lambda m: m.group("key") + MASK, _USERINFO.sub(_mask_userinfo, s))
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        # only where it stands alone: a short secret (a token "0000", a password "pass") inside a longer word or
        # number ("0.50000", "passing") is not it, and masking it there corrupted JSON artifacts
        out = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, out)
    return out


def uri(u: str | None) -> str | None:
    """A URI fit to print: its password (and a lone token as user) masked."""
    return None if u is None else text(u)


def data(obj: Any) -> Any:
    """A copy of plain data (dicts, lists, scalars) with every string redacted: params, JSON artifacts."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {k: data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(data(v) for v in obj)
    return obj
