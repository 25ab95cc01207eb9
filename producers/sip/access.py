"""Who may call in: source networks and SIP digest authentication (RFC 2617/7616, MD5, qop=auth). Pure.

Each digest account is ``user:password:appId``: a PBX authenticates as the user, and its calls belong to that
app. Nonces are stateless (issue time + HMAC with a per-process key), so a challenge answered within
``NONCE_TTL_S`` verifies on this process without a nonce table.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass

from aiosipua import parse_auth

__all__ = ["REALM", "DigestAccount", "DigestVerifier", "SourceFilter", "parse_digest_accounts"]

REALM = "convoscope"
NONCE_TTL_S = 300.0


@dataclass(frozen=True)
class DigestAccount:
    username: str
    password: str
    app_id: str


def parse_digest_accounts(spec: str | None) -> dict[str, DigestAccount]:
    """``user:password:appId[,...]``; the password may contain ':' (the app id never does)."""
    accounts: dict[str, DigestAccount] = {}
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        username, sep, rest = entry.partition(":")
        password, sep2, app_id = rest.rpartition(":")
        if not (sep and sep2 and username and password and app_id):
            raise ValueError(f"digest account {username or entry!r} is not user:password:appId")
        accounts[username] = DigestAccount(username, password, app_id)
    return accounts


class SourceFilter:
    def __init__(self, networks: str) -> None:
        self.networks = [ipaddress.ip_network(n.strip(), strict=False) for n in networks.split(",") if n.strip()]

    def allows(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class DigestVerifier:
    def __init__(self, accounts: dict[str, DigestAccount], realm: str = REALM, key: bytes | None = None) -> None:
        self.accounts = accounts
        self.realm = realm
        self._key = key or secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self.accounts)

    def _sign(self, issued: str) -> str:
        return hmac.new(self._key, issued.encode(), hashlib.sha256).hexdigest()[:32]

    def challenge(self, now_s: float | None = None) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        issued = f"{int((now_s if now_s is not None else time.time()) * 1000):x}"
        nonce = f"{issued}.{self._sign(issued)}"
        return f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"'

    def _nonce_valid(self, nonce: str, now_s: float) -> bool:
        issued, _, signature = nonce.partition(".")
        if not hmac.compare_digest(signature, self._sign(issued)):
            return False
        try:
            age_s = now_s - int(issued, 16) / 1000
        except ValueError:
            return False
        return 0 <= age_s <= NONCE_TTL_S

    def verify(self, method: str, authorization: str | None, now_s: float | None = None) -> DigestAccount | None:
        """The account whose credentials ``authorization`` (an Authorization header value) proves, else None."""
        if not authorization:
            return None
        try:
            credentials = parse_auth(authorization)
        except (ValueError, IndexError):
            return None
        if credentials.scheme.lower() != "digest":
            return None
        params = {k.lower(): v or "" for k, v in credentials.params.items()}
        account = self.accounts.get(params.get("username", ""))
        if account is None or params.get("realm") != self.realm:
            return None
        if params.get("algorithm", "MD5").upper() != "MD5":
            return None
        nonce = params.get("nonce", "")
        if not self._nonce_valid(nonce, now_s if now_s is not None else time.time()):
            return None
        ha1 = _md5(f"{account.username}:{self.realm}:{account.password}")
        ha2 = _md5(f"{method}:{params.get('uri', '')}")
        qop = params.get("qop", "")
        if qop == "auth":
            expected = _md5(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}")
        elif not qop:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        else:
            return None
        return account if hmac.compare_digest(expected, params.get("response", "")) else None
