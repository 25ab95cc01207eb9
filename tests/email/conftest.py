"""SMTP servers for the email sink's tests (tests/email/smtp_server.py), plain or with STARTTLS and AUTH, with a
self-signed certificate made by the openssl CLI at test time."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.email.smtp_server import SMTP_PASSWORD, SMTP_USER, SmtpServer, start_smtp_server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp_server()
    try:
        yield server
    finally:
        server.stop()


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def starttls_smtp_server(self_signed_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """Requires STARTTLS, then AUTH (LOGIN/PLAIN) with SMTP_USER and SMTP_PASSWORD, before any mail."""
    cert, key = self_signed_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = start_smtp_server(tls_context=context, require_starttls=True, auth_required=True,
                               auth_require_tls=True, authenticator=_authenticate)
    try:
        yield server
    finally:
        server.stop()
