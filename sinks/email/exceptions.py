"""The email sink's errors: one root, with ``retriable`` deciding between another attempt and giving up."""

from __future__ import annotations

__all__ = ["EmailConfigError", "EmailError", "EmailSendError"]


class EmailError(Exception):
    retriable = False


class EmailConfigError(EmailError):
    """``SMTP_URL`` is missing or malformed: no attempt can succeed until an operator fixes it."""


class EmailSendError(EmailError):
    """The SMTP server could not be reached, or refused the message."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable
