"""Real SMTP servers for tests: aiosmtpd in process (its own thread), recording what it accepts. Used by
tests/email and the end-to-end stack (tests/e2e/conftest.py)."""

from __future__ import annotations

import email
import threading
import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from convoscope.embedded_broker import free_port

SMTP_USER, SMTP_PASSWORD = "convoscope", "s3cret:pass"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class Mailbox:
    """What an aiosmtpd server accepted; ``refuse_rcpt`` makes it answer every RCPT with that reply,
    ``refuse_addresses`` only those addresses."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: str | None = None
    refuse_addresses: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        if address in self.refuse_addresses:
            return self.refuse_addresses[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout_s: float) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        with self.lock:
            return list(self.received)


@dataclass
class SmtpServer:
    mailbox: Mailbox
    controller: Controller
    port: int

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.controller.stop()


def start_smtp_server(port: int | None = None, **smtp_options: Any) -> SmtpServer:
    mailbox = Mailbox()
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    return SmtpServer(mailbox, controller, port)
