"""Every error the SDK raises derives from ``ConvoscopeError``; third-party errors are wrapped at the I/O boundary.

``retriable`` says whether trying the same call again later can succeed (a dropped network, a busy server), as
opposed to a mistake in the call or the credentials.
"""

from __future__ import annotations

import builtins

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CallbackError",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConversationResumeWarning",
    "ConvoscopeError",
    "JobFailedError",
    "NetworkError",
    "NotFoundError",
    "StreamingError",
    "TimeoutError",
]


class ConvoscopeError(Exception):
    """Root of the SDK's exceptions."""

    retriable: bool = False


class ConfigurationError(ConvoscopeError, ValueError):
    """No credentials or base URL could be found, or an argument is malformed. (A ``ValueError`` too, as the
    official SDK raised ``ValueError('app_id is required')``.)"""


class AuthenticationError(ConvoscopeError):
    """The server refused the app credentials or the access token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ApiError(ConvoscopeError):
    """The REST API answered with an error status. ``message`` is the server's ``{"message": ...}``."""

    def __init__(self, status: int, message: str, body: object = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.body = body
        self.retriable = status == 429 or status >= 500


class NotFoundError(ApiError):
    """HTTP 404: the conversation (or job, or endpoint) does not exist, or belongs to another app."""


class NetworkError(ConvoscopeError):
    """The server could not be reached, or the connection broke during a request."""

    retriable = True


class ConnectionClosedError(ConvoscopeError):
    """A streaming or subscribe WebSocket closed and could not be resumed."""

    retriable = True

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message if code is None else f"{message} (close code {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class StreamingError(ConvoscopeError):
    """The streaming API sent ``{"type": "error"}``: ``message`` is its category, ``details`` the why."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(f"{message}: {details}" if details else message)
        self.message = message
        self.details = details


class TimeoutError(ConvoscopeError, builtins.TimeoutError):
    """An operation did not finish within its timeout. Also a built-in ``TimeoutError``."""

    retriable = True


class CallbackError(ConvoscopeError):
    """A callback given to ``subscribe`` raised; the original exception is ``__cause__``. Raised from the next
    call on the connection, so a bug in a callback is never silently lost."""


class JobFailedError(ConvoscopeError):
    """An Async API job ended with status ``failed``."""

    def __init__(self, job_id: str, conversation_id: str | None) -> None:
        super().__init__(f"job {job_id} (conversation {conversation_id}) failed")
        self.job_id = job_id
        self.conversation_id = conversation_id


class ConversationResumeWarning(UserWarning):
    """After a reconnect the server put the stream into a different conversation than before (it did not keep the
    conversation for ``noConnectionTimeout``). Audio keeps flowing; ``connection.conversation_ids`` lists both."""
