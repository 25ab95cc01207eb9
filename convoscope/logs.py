"""Log output for people (text) or for log pipelines (one JSON object per line), with per-call context.

``bind_log_context(conversation_id=..., connection_id=...)`` stores identifiers in a context variable; every record
logged afterwards from the same asyncio task (and from tasks it creates) carries them as JSON fields, so one call's
lines can be found across processes without putting ids into every message. ``CONVOSCOPE_LOG_FORMAT=json`` selects
the JSON form.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CONTEXT_FIELDS",
    "JsonFormatter",
    "LogFormat",
    "bind_log_context",
    "configure_logging",
    "current_log_context",
    "log_context",
]

LogFormat = Literal["text", "json"]

CONTEXT_FIELDS = ("conversation_id", "connection_id", "stream_id", "trace_id")
"""Identifiers a record may carry; set through the helpers below or passed with ``extra={...}``."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY_LOGGERS = ("aiokafka", "kafka", "httpx", "faster_whisper", "alembic")

_NO_FIELDS: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("convoscope_log_context", default=_NO_FIELDS)


def _checked(fields: Mapping[str, str | None]) -> dict[str, str]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context fields {sorted(unknown)}; known: {CONTEXT_FIELDS}")
    return {name: value for name, value in fields.items() if value}


def bind_log_context(**fields: str | None) -> None:
    """Add fields for the rest of the current task (a connection handler, a worker loop). None/empty are ignored."""
    _context.set({**_context.get(), **_checked(fields)})


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Add fields inside the block only."""
    token = _context.set({**_context.get(), **_checked(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def current_log_context() -> dict[str, str]:
    return dict(_context.get())


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", <context fields>, "exception"?}``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)  # extra={...} wins over the context
            if value:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO, log_format: LogFormat = "text") -> None:
    """Root handler on stderr in the chosen format; replaces handlers set before (idempotent)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
