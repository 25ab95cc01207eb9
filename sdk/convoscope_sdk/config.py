"""Where the SDK finds its base URL and app credentials, and the timeouts it uses. Pure: reads only what it is given.

Credentials, first found wins:

1. the ``credentials`` argument: ``{"app_id": ..., "app_secret": ...}`` (the official SDK's form; ``appId`` and
   ``appSecret`` work too), a ``Credentials``, or an ``(app_id, app_secret)`` pair;
2. the environment: ``CONVOSCOPE_APP_ID``/``CONVOSCOPE_APP_SECRET``, then ``SYMBL_APP_ID``/``SYMBL_APP_SECRET``;
3. a config file, ``convoscope.conf`` then ``symbl.conf``, in the working directory and then the home directory,
   with a ``[credentials]`` section holding ``app_id`` and ``app_secret`` (the official SDK's ``symbl.conf``);
4. ``.convoscope/credentials.json`` in the working directory, which ``convoscope up`` writes.

Base URL, first found wins: the ``base_url`` argument, ``CONVOSCOPE_BASE_URL``, ``base_url`` in the ``[convoscope]``
section of a config file (same search), else ``http://127.0.0.1:8080``.
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from convoscope_sdk.exceptions import ConfigurationError

__all__ = [
    "CONFIG_FILENAMES",
    "DEFAULT_BASE_URL",
    "Credentials",
    "CredentialsLike",
    "Timeouts",
    "config_paths",
    "resolve_base_url",
    "resolve_credentials",
    "websocket_url",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
CONFIG_FILENAMES = ("convoscope.conf", "symbl.conf")
CREDENTIALS_SECTION = "credentials"
CONVOSCOPE_SECTION = "convoscope"
LOCAL_STACK_CREDENTIALS = Path(".convoscope") / "credentials.json"
ENV_BASE_URL = "CONVOSCOPE_BASE_URL"
ENV_CREDENTIAL_PAIRS = (("CONVOSCOPE_APP_ID", "CONVOSCOPE_APP_SECRET"), ("SYMBL_APP_ID", "SYMBL_APP_SECRET"))


@dataclass(frozen=True)
class Credentials:
    """An app's id and secret. The secret is left out of ``repr`` so it does not end up in logs."""

    app_id: str
    app_secret: str = field(repr=False)
    source: str = "argument"


CredentialsLike = Credentials | Mapping[str, Any] | tuple[str, str]


@dataclass(frozen=True)
class Timeouts:
    """Seconds. Every network wait in the SDK is bounded by one of these."""

    connect_s: float = 10.0  # TCP + TLS + WebSocket handshake, and HTTP connect
    request_s: float = 30.0  # one REST request, end to end
    start_s: float = 30.0  # start_request until conversation_created
    stop_s: float = 120.0  # stop_request until conversation_completed (the server first finishes transcribing)
    send_s: float = 60.0  # send_audio waiting for room in the outgoing buffer (while reconnecting)
    job_s: float = 3600.0  # an Async API job until completed or failed
    job_poll_s: float = 2.0  # between job status polls


def config_paths(cwd: Path, home: Path) -> list[Path]:
    """Config files in the order they are consulted."""
    return [directory / name for directory in (cwd, home) for name in CONFIG_FILENAMES]


def _read_config(path: Path) -> configparser.ConfigParser | None:
    if not path.is_file():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    return parser


def _from_argument(credentials: CredentialsLike) -> Credentials:
    if isinstance(credentials, Credentials):
        return credentials
    if isinstance(credentials, tuple):
        if len(credentials) != 2:
            raise ConfigurationError("credentials as a tuple must be (app_id, app_secret)")
        app_id, app_secret = credentials
    elif isinstance(credentials, Mapping):
        app_id = credentials.get("app_id", credentials.get("appId"))
        app_secret = credentials.get("app_secret", credentials.get("appSecret"))
    else:
        raise ConfigurationError(f"credentials must be a dict with app_id and app_secret, not {type(credentials)}")
    if not app_id:
        raise ConfigurationError("app_id is required")
    if not app_secret:
        raise ConfigurationError("app_secret is required")
    return Credentials(str(app_id), str(app_secret), "argument")


def resolve_credentials(
    credentials: CredentialsLike | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> Credentials:
    """The credentials to use, from the first source that has both an id and a secret (see the module doc)."""
    if credentials is not None:
        return _from_argument(credentials)
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    for id_name, secret_name in ENV_CREDENTIAL_PAIRS:
        app_id, app_secret = environ.get(id_name, "").strip(), environ.get(secret_name, "").strip()
        if app_id and app_secret:
            return Credentials(app_id, app_secret, f"${id_name}")
    for path in config_paths(cwd, home):
        parser = _read_config(path)
        if parser is None or not parser.has_section(CREDENTIALS_SECTION):
            continue
        app_id = parser.get(CREDENTIALS_SECTION, "app_id", fallback="").strip()
        app_secret = parser.get(CREDENTIALS_SECTION, "app_secret", fallback="").strip()
        if app_id and app_secret:
            return Credentials(app_id, app_secret, str(path))
    local = cwd / LOCAL_STACK_CREDENTIALS
    if local.is_file():
        try:
            saved = json.loads(local.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read {local}: {exc}") from exc
        if isinstance(saved, dict) and saved.get("appId") and saved.get("appSecret"):
            return Credentials(str(saved["appId"]), str(saved["appSecret"]), str(local))
    raise ConfigurationError(
        "no credentials: pass credentials={'app_id': ..., 'app_secret': ...}, set CONVOSCOPE_APP_ID and "
        "CONVOSCOPE_APP_SECRET (or SYMBL_APP_ID and SYMBL_APP_SECRET), or write a [credentials] section to "
        f"{' or '.join(str(p) for p in config_paths(cwd, home))}"
    )


def _normalize_base_url(url: str, source: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"base URL from {source} must look like http(s)://host[:port][/prefix], not {url!r}")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def resolve_base_url(
    base_url: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> str:
    """The REST base URL (no trailing slash), from the first source that sets one (see the module doc)."""
    if base_url:
        return _normalize_base_url(base_url, "the base_url argument")
    environ = os.environ if environ is None else environ
    if environ.get(ENV_BASE_URL, "").strip():
        return _normalize_base_url(environ[ENV_BASE_URL], f"${ENV_BASE_URL}")
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    for path in config_paths(cwd, home):
        parser = _read_config(path)
        if parser is not None and parser.get(CONVOSCOPE_SECTION, "base_url", fallback="").strip():
            return _normalize_base_url(parser.get(CONVOSCOPE_SECTION, "base_url"), str(path))
    return DEFAULT_BASE_URL


def websocket_url(base_url: str, path: str, query: Iterable[tuple[str, str]] = ()) -> str:
    """``http(s)://host/prefix`` + ``/v1/...`` as ``ws(s)://host/prefix/v1/...``."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query_string = "&".join(f"{key}={value}" for key, value in query)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, query_string, ""))
