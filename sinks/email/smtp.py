"""SMTP delivery through aiosmtplib: ``SMTP_URL`` parsed once, one send per call, errors as our own types.

``SMTP_URL`` forms:
- ``smtp://[user:password@]host[:port]`` (port 587 with credentials, else 25): STARTTLS when the server offers it;
  ``?starttls=require`` refuses to send in clear, ``?starttls=never`` does not try (a local relay on 127.0.0.1).
- ``smtps://[user:password@]host[:port]`` (port 465): TLS from the first byte.
- ``?cafile=/path/ca.pem`` trusts that CA (a private relay) besides the system's; ``?verify=false`` skips
  certificate checks (test servers only). User and password are percent-decoded.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from sinks.email.exceptions import EmailConfigError, EmailSendError

__all__ = ["SmtpTarget", "backoff_delay_s", "send_email"]

StartTls = Literal["auto", "require", "never"]
SMTP_PORT, SUBMISSION_PORT, SMTPS_PORT = 25, 587, 465


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: StartTls
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    verify: bool = True

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """Raises EmailConfigError saying what is wrong (never echoing the password)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise EmailConfigError(f"SMTP_URL is not a URL: {exc}") from exc
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise EmailConfigError("SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise EmailConfigError("SMTP_URL has no host")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = sorted(set(query) - {"starttls", "cafile", "verify"})
        if unknown:
            raise EmailConfigError(f"SMTP_URL has unknown options {unknown}; known: starttls, cafile, verify")
        starttls = query.get("starttls", "auto").lower()
        if starttls not in ("auto", "require", "never"):
            raise EmailConfigError("SMTP_URL ?starttls= must be auto, require or never")
        if scheme == "smtps" and "starttls" in query:
            raise EmailConfigError("SMTP_URL: smtps:// is TLS from the start; ?starttls= applies to smtp:// only")
        verify = query.get("verify", "true").lower()
        if verify not in ("true", "false"):
            raise EmailConfigError("SMTP_URL ?verify= must be true or false")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if scheme == "smtps":
            default_port = SMTPS_PORT
        else:
            default_port = SUBMISSION_PORT if username else SMTP_PORT
        return cls(
            host=parts.hostname,
            port=port or default_port,
            implicit_tls=scheme == "smtps",
            starttls="never" if scheme == "smtps" else starttls,  # type: ignore[arg-type]
            username=username,
            password=password,
            cafile=query.get("cafile"),
            verify=verify == "true",
        )

    def describe(self) -> str:
        """For logs: where, how, as whom; no password."""
        mode = "smtps" if self.implicit_tls else f"smtp starttls={self.starttls}"
        return f"{mode} {self.host}:{self.port}" + (f" as {self.username}" if self.username else "")

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def backoff_delay_s(failed_attempts: int, initial_s: float, max_s: float) -> float:
    """The pause after the ``failed_attempts``-th failure: ``initial_s`` doubling each time, at most ``max_s``."""
    return float(min(max_s, initial_s * 2 ** max(0, failed_attempts - 1)))


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    """A 5xx answer (a refused recipient, bad credentials, a message refused) will be the same next time."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= error.code < 600 for error in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600
    return isinstance(exc, aiosmtplib.SMTPNotSupported)  # e.g. ?starttls=require against a server without it


async def send_email(target: SmtpTarget, message: EmailMessage, recipients: Sequence[str], *,
                     timeout_s: float) -> tuple[str, dict[str, str]]:
    """Send ``message`` to ``recipients`` over one new connection: the server's answer to the message, and the
    recipients it refused (the others got it). Raises EmailSendError (``retriable`` says whether another attempt
    may succeed); refusing every recipient is such an error."""
    try:
        refused, answer = await aiosmtplib.send(
            message,
            recipients=list(recipients),
            hostname=target.host,
            port=target.port,
            username=target.username,
            password=target.password,
            use_tls=target.implicit_tls,
            start_tls={"auto": None, "require": True, "never": False}[target.starttls],
            tls_context=target.tls_context() if target.implicit_tls or target.starttls != "never" else None,
            timeout=timeout_s,
        )
    except aiosmtplib.SMTPException as exc:
        raise EmailSendError(f"{type(exc).__name__}: {exc}", retriable=not _permanent(exc)) from exc
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        raise EmailSendError(f"{type(exc).__name__}: {exc}", retriable=True) from exc
    return answer, {address: f"{response.code} {response.message}" for address, response in refused.items()}
