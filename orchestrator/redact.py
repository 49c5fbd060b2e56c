"""Credentials never leave the process: every URI that is printed, logged or saved goes through here first.

This is the ONE redaction of the package: the log filter (log.py), the command's stdout/stderr (`streams`, set up
by cli.py), MLflow params/tags/artifacts (store/mirror.py), saved configs and error lines all pass through `text`.
It masks: `user:pass@` in URIs, secret-named query values (`?token=`, `&password=`), `key=value` / `key: value`
whose key names a secret (`token=`, `MLFLOW_TRACKING_PASSWORD=`, `aws_secret_access_key = ...`), an
`Authorization:` header's credentials (and a lone `Bearer ...`), AWS-style access key ids (AKIA..., ASIA...).

A tracking URI may carry a password (`http://user:pw@host`, `postgresql://u:pw@db/mlflow`, `...?password=pw`).
MLflow itself reads `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` for auth, which is where credentials
belong; when they are given in the URI anyway, the run still uses them, but params, artifacts, the run folder,
progress and error lines show `***` in their place. Secrets seen in URIs are remembered (`remember`) so that a
library message quoting one on its own (e.g. "password authentication failed for 's3cr3t'") is cleaned too.
"""
from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Iterator
from urllib.parse import unquote

MASK = "***"
# scheme://userinfo@  -- userinfo has no '/', '@' or whitespace
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# ?password=... &token=... &sslpassword=... (query values whose key names a secret)
_QUERY = re.compile(r"(?P<key>[?&;][^=&;#\s'\"]*(?:pass|secret|token|auth|cred|key)[^=&;#\s'\"]*=)"
                    r"(?P<value>[^&;#\s'\"]+)", re.IGNORECASE)
# key=value anywhere, key: value at a line's start (YAML) or with the key quoted (JSON, a dict's repr), where the key
# (a whole word, any prefix: HF_TOKEN, aws_secret_access_key) ends in a secret's name; a tokenizer's own special
# tokens (pad_token: <pad>), a number under a per_token key (JSON metrics) are no secret, and prose ("the token: was
# refused") is left alone
_KEY = (r"(?<![A-Za-z0-9_.])(?![A-Za-z0-9_]*(?:(?:pad|eos|bos|unk|sep|cls|mask|per)_token|_tokens?_key)\b)[A-Za-z0-9_]*"
        r"(?:password|passwd|secret|secret_access_key|secret_key|access_key_id|api_?key|token)")
_VALUE = r"(?P<value>[^\s'\",;&}]+)"
_ASSIGN = re.compile(rf"(?P<key>{_KEY}[\"']?\s*=\s*[\"']?){_VALUE}", re.IGNORECASE)
_ASSIGN_COLON = re.compile(rf"(?P<key>(?:^[ \t-]*|[\"']){_KEY}[\"']?\s*:(?!//)\s*[\"']?)(?![\d.]+\b){_VALUE}",
                           re.IGNORECASE | re.MULTILINE)
# Authorization: Bearer xyz / "authorization": "Basic xyz" (the scheme kept, the credentials masked)
_AUTH_HEADER = re.compile(r"(?P<key>authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?)"
                          r"(?P<value>[^\s'\",;]+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")
_known: set[str] = set()
_lock = threading.Lock()


def _mask_userinfo(m: re.Match) -> str:
    user, sep, _pw = m.group("userinfo").partition(":")
    # user:pw -> user:***; a lone user part may itself be a token (https://TOKEN@host) -> ***
    return m.group("scheme") + (f"{user}:{MASK}" if sep else MASK) + "@"


def _mask_value(m: re.Match) -> str:
    return m.group("key") + MASK


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
    out = _QUERY.sub(_mask_value, _USERINFO.sub(_mask_userinfo, s))
    for pattern in (_AUTH_HEADER, _BEARER, _ASSIGN, _ASSIGN_COLON):
        out = pattern.sub(_mask_value, out)
    out = _AWS_KEY_ID.sub(MASK, out)
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


class Stream:
    """A text stream that masks credentials line by line before they reach `raw` (a command's stdout / stderr): a
    secret split over two writes (a streamed job log) is still seen whole; flush() passes a partial line on."""

    def __init__(self, raw: Any) -> None:
        self.raw, self._part = raw, ""

    def write(self, s: str) -> int:
        *lines, self._part = (self._part + s).split("\n")
        if lines:
            self.raw.write("".join(text(line) + "\n" for line in lines))
        return len(s)

    def flush(self) -> None:
        if self._part:
            self.raw.write(text(self._part))
            self._part = ""
        self.raw.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...: the raw stream's
        return getattr(self.raw, name)


@contextlib.contextmanager
def streams() -> Iterator[None]:
    """sys.stdout and sys.stderr redacted while a command runs (every print of commands/ passes `text`)."""
    import sys

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Stream(saved[0]), Stream(saved[1])
    try:
        yield
    finally:
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to say
                pass
        sys.stdout, sys.stderr = saved
