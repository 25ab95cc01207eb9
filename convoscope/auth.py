"""Apps (appId/appSecret), access tokens (HS256 JWTs), and where a request carries its token.

Symbl clients send the token in one of five places (symbl-api.md §1.2); ``token_from_request`` accepts them all.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.engine import dialect_insert
from convoscope.db.models import App, SigningKey
from convoscope.settings import Settings
from convoscope.timestamps import now_ms

__all__ = [
    "AppCredentials",
    "AppInfo",
    "InvalidToken",
    "TokenIssuer",
    "create_app",
    "hash_secret",
    "key_id",
    "list_apps",
    "load_token_issuer",
    "subprotocol_token",
    "token_from_request",
    "verify_app",
    "verify_secret",
]

APP_ID_BYTES = 32  # 64 hex chars
APP_SECRET_BYTES = 64  # 128 hex chars
SIGNING_KEY_ID = "jwt-hs256"
SIGNING_KEY_BYTES = 32
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
TOKEN_ISSUER = "convoscope"
JWT_ALGORITHM = "HS256"
VIEW_AUDIENCE = "conversation-view"
# scrypt cost: ~16 MiB and a few tens of ms per check; secrets are long and random, this is defence in depth.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SCRYPT_SALT_BYTES = 16
SCRYPT_DKLEN = 32


def key_id(key: bytes) -> str:
    """A JWT ``kid`` that names a key without revealing it."""
    return hashlib.sha256(b"convoscope-kid:" + key).hexdigest()[:16]


class InvalidToken(Exception):
    """The token is missing, malformed, expired or not signed by us."""


@dataclass(frozen=True, slots=True)
class AppCredentials:
    app_id: str
    app_secret: str


@dataclass(frozen=True, slots=True)
class AppInfo:
    app_id: str
    name: str
    created_at_ms: int


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt_hex$hash_hex``."""
    salt = salt if salt is not None else secrets.token_bytes(SCRYPT_SALT_BYTES)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN, maxmem=64 * 1024 * 1024
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            secret.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest_hex) // 2,
            maxmem=64 * 1024 * 1024,
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the app id is unknown, so both failures cost the same time."""
    return hash_secret("0" * 2 * APP_SECRET_BYTES, salt=b"\0" * SCRYPT_SALT_BYTES)


async def create_app(sessions: async_sessionmaker[AsyncSession], name: str) -> AppCredentials:
    """Register an app; the secret is returned once and stored only as a salted scrypt hash."""
    credentials = AppCredentials(secrets.token_hex(APP_ID_BYTES), secrets.token_hex(APP_SECRET_BYTES))
    secret_hash = await asyncio.to_thread(hash_secret, credentials.app_secret)
    async with sessions.begin() as session:
        session.add(App(id=credentials.app_id, name=name, secret_hash=secret_hash, created_at_ms=now_ms()))
    return credentials


async def verify_app(sessions: async_sessionmaker[AsyncSession], app_id: str, app_secret: str) -> bool:
    async with sessions() as session:
        stored = await session.scalar(select(App.secret_hash).where(App.id == app_id))
    ok = await asyncio.to_thread(lambda: verify_secret(app_secret, stored or _dummy_hash()))
    return ok and stored is not None


async def list_apps(sessions: async_sessionmaker[AsyncSession]) -> list[AppInfo]:
    async with sessions() as session:
        rows = await session.execute(select(App.id, App.name, App.created_at_ms).order_by(App.created_at_ms, App.id))
        return [AppInfo(app_id=row.id, name=row.name, created_at_ms=row.created_at_ms) for row in rows]


class TokenIssuer:
    """Issues and checks HS256 access tokens whose subject is the app id. Symbl SDKs read ``exp`` from them.

    Tokens are signed with ``key`` and name it in their ``kid`` header; ``previous_keys`` still verify (never
    sign), so a key can be rotated without logging every client out: tokens and links signed with the old key
    work until they expire or the old key is dropped from the list."""

    def __init__(self, key: bytes, ttl_s: int = 86_400, previous_keys: Sequence[bytes] = ()) -> None:
        for candidate in (key, *previous_keys):
            if len(candidate) < MIN_KEY_BYTES:
                raise ValueError(f"JWT signing keys (CONVOSCOPE_JWT_SECRET, CONVOSCOPE_JWT_PREVIOUS_SECRETS) must be "
                                 f"at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._kid = key_id(key)
        self._verifying = {key_id(k): k for k in (key, *previous_keys)}
        self.ttl_s = ttl_s

    def _decode(self, token: str, **options: Any) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        # The named key when known; every key for tokens from before key ids (or a kid we do not know).
        keys = [self._verifying[kid]] if kid in self._verifying else list(self._verifying.values())
        for key in keys:
            try:
                return jwt.decode(token, key, algorithms=[JWT_ALGORITHM], issuer=TOKEN_ISSUER, **options)
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from exc
        raise InvalidToken("Signature verification failed")

    def issue(self, app_id: str, *, now_s: int | None = None) -> tuple[str, int]:
        """Returns ``(token, expires_in_s)``."""
        issued_at = int(time.time()) if now_s is None else now_s
        claims = {"sub": app_id, "iat": issued_at, "exp": issued_at + self.ttl_s, "iss": TOKEN_ISSUER}
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM, headers={"kid": self._kid}), self.ttl_s

    def verify(self, token: str) -> str:
        """The app id the token was issued to; raises InvalidToken."""
        claims = self._decode(token, options={"require": ["exp", "iat", "sub"]})
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no subject")
        return subject

    def issue_view_token(self, app_id: str, conversation_id: str, ttl_s: int, *, now_s: int | None = None) -> str:
        """A token that opens one conversation's page (and its live view) and nothing else: its audience keeps it
        from being used as an access token, and an access token from being used as one of these."""
        issued_at = int(time.time()) if now_s is None else now_s
        claims = {"sub": app_id, "cid": conversation_id, "aud": VIEW_AUDIENCE, "iat": issued_at,
                  "exp": issued_at + ttl_s, "iss": TOKEN_ISSUER}
        return jwt.encode(claims, self._key, algorithm=JWT_ALGORITHM, headers={"kid": self._kid})

    def verify_view_token(self, token: str, conversation_id: str) -> str:
        """The app id a view token was issued for, if it is valid for ``conversation_id``; raises InvalidToken."""
        claims = self._decode(token, audience=VIEW_AUDIENCE, options={"require": ["exp", "iat", "sub", "aud"]})
        if claims.get("cid") != conversation_id or not isinstance(claims.get("sub"), str):
            raise InvalidToken("the link is for another conversation")
        return str(claims["sub"])


async def load_token_issuer(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> TokenIssuer:
    """The key is CONVOSCOPE_JWT_SECRET when set; otherwise one generated key kept in ``signing_keys``.
    Concurrent first starts insert-or-ignore, then all read the row that won."""
    previous = [k.strip().encode() for k in (settings.jwt_previous_secrets.get_secret_value().split(",")
                                             if settings.jwt_previous_secrets else ()) if k.strip()]
    if settings.jwt_secret is not None:
        return TokenIssuer(settings.jwt_secret.get_secret_value().encode(), settings.token_ttl_s, previous)
    async with sessions.begin() as session:
        key = await session.scalar(select(SigningKey.key).where(SigningKey.id == SIGNING_KEY_ID))
        if key is None:
            insert = dialect_insert(session, SigningKey).values(
                id=SIGNING_KEY_ID, key=secrets.token_bytes(SIGNING_KEY_BYTES), created_at_ms=now_ms()
            )
            await session.execute(insert.on_conflict_do_nothing(index_elements=["id"]))
    if key is None:
        async with sessions() as session:
            key = await session.scalar(select(SigningKey.key).where(SigningKey.id == SIGNING_KEY_ID))
    if key is None:  # pragma: no cover - the insert above or a concurrent one committed
        raise RuntimeError("signing key row missing after insert")
    return TokenIssuer(bytes(key), settings.token_ttl_s, previous)


def _lower_keys(mapping: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in mapping.items()}


def _looks_like_jwt(value: str) -> bool:
    parts = value.split(".")
    return len(parts) == 3 and all(parts[:2])


def subprotocol_token(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The token offered as a WebSocket subprotocol (Symbl JS SDK >= 1.4.10, and browsers through the Web SDK),
    and the subprotocol value the server must accept (echo) for the handshake to succeed: ``(token, echo)``."""
    offered = _lower_keys(headers).get("sec-websocket-protocol", "")
    for value in (item.strip() for item in offered.split(",")):
        if value and _looks_like_jwt(value):
            return value, value
    return None, None


def token_from_request(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The access token from ``x-api-key``, ``Authorization: Bearer``, ``?access_token=``, ``?accessToken=``
    or ``Sec-WebSocket-Protocol``, in that order; None when there is none."""
    lowered = _lower_keys(headers)
    if token := lowered.get("x-api-key", "").strip():
        return token
    scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    for name in ("access_token", "accessToken"):
        if token := (query.get(name) or "").strip():
            return token
    token, _ = subprotocol_token(lowered)
    return token
