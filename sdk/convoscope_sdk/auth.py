"""Access tokens: fetched with the app credentials, reused while valid, refreshed before they expire.

The server answers ``expiresIn`` with each token (a JWT carrying ``exp``, as Symbl's were). A token is refreshed
``REFRESH_BEFORE_EXPIRY_S`` before it expires (the JS SDK's 300 s), or at half its lifetime when that is shorter,
so a client never sends a token that expires on the way. Refreshing happens when a token is needed (every REST
call and every WebSocket (re)connect asks for one), so nothing runs in the background.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from convoscope_sdk.config import Credentials, Timeouts
from convoscope_sdk.exceptions import ApiError, AuthenticationError, NetworkError, TimeoutError

__all__ = ["REFRESH_BEFORE_EXPIRY_S", "Token", "TokenProvider", "jwt_expiry", "refresh_time"]

REFRESH_BEFORE_EXPIRY_S = 300.0
TOKEN_PATH = "/oauth2/token:generate"


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without checking the signature (the server checks it);
    None when the token is not a JWT or has no numeric ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def refresh_time(obtained_at: float, expires_at: float, margin_s: float = REFRESH_BEFORE_EXPIRY_S) -> float:
    """When to replace a token obtained at ``obtained_at`` that expires at ``expires_at`` (epoch seconds):
    ``margin_s`` before expiry, or halfway through its life if that comes later (short-lived tokens)."""
    lifetime = max(0.0, expires_at - obtained_at)
    return expires_at - min(margin_s, lifetime / 2)


@dataclass(frozen=True)
class Token:
    value: str
    obtained_at: float
    expires_at: float

    @property
    def refresh_at(self) -> float:
        return refresh_time(self.obtained_at, self.expires_at)


class TokenProvider:
    """One app's token for one server, shared by every call that client makes. Safe for concurrent use."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: Credentials,
        timeouts: Timeouts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._timeouts = timeouts
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    @property
    def current(self) -> Token | None:
        return self._token

    async def get(self) -> str:
        """A token valid for a while yet: the cached one, or a new one when it is due for refresh."""
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        async with self._lock:
            token = self._token
            if token is None or self._clock() >= token.refresh_at:
                token = self._token = await self._generate()
            return token.value

    def invalidate(self, value: str) -> None:
        """The server refused ``value``: fetch a new token next time (unless another call already did)."""
        if self._token is not None and self._token.value == value:
            self._token = None

    async def _generate(self) -> Token:
        body = {"type": "application", "appId": self._credentials.app_id, "appSecret": self._credentials.app_secret}
        obtained_at = self._clock()
        try:
            response = await self._http.post(TOKEN_PATH, json=body, timeout=self._timeouts.request_s)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"token request timed out after {self._timeouts.request_s} s") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"token request failed: {exc}") from exc
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"{_message(response)} (credentials from {self._credentials.source})", response.status_code
            )
        if response.status_code != 200:
            raise ApiError(response.status_code, _message(response))
        try:
            answer = response.json()
            value = str(answer["accessToken"])
            expires_in = float(answer.get("expiresIn", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(response.status_code, f"unexpected token response: {response.text[:200]}") from exc
        # expiresIn is relative, so it holds even when our clock and the server's disagree; exp is the fallback.
        expires_at = obtained_at + expires_in if expires_in > 0 else (jwt_expiry(value) or obtained_at)
        return Token(value, obtained_at, expires_at)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.text[:200]
