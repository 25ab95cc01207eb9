"""Waiting out a database that is away: which errors mean "retry later", and the backoff loop the sinks share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

if TYPE_CHECKING:
    from convoscope.health import Health

__all__ = ["RETRY_INITIAL_S", "RETRY_MAX_S", "is_transient", "retry_transient", "sleep_unless_stopped"]

log = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
DB_RETRIES = Counter("convoscope_store_db_retries_total", "Database operations retried while it was unavailable")

T = TypeVar("T")

# SQLSTATE classes/codes that mean "the database is not available right now": connection exceptions, insufficient
# resources, operator intervention (shutdown, starting up), transaction rollbacks (deadlock, serialization),
# invalid authorization (credentials being rotated), unknown database (not created yet), connections disallowed,
# and a schema that is missing or older than this code (migrations pending): records must wait, not be skipped.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "28", "3D"})
TRANSIENT_SQLSTATES = frozenset({"55000", "55006", "42P01", "42703"})


def sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, exc.__cause__):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and code:
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """The database is unreachable, restarting or locked: retry later. Anything else is about the data."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc.orig, (OSError, TimeoutError)):
        return True
    if exc.orig is not None and isinstance(exc.orig.__cause__, (OSError, TimeoutError)):
        return True
    code = sqlstate(exc.orig) if exc.orig is not None else None
    return code is not None and (code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES)


async def sleep_unless_stopped(stop: asyncio.Event | None, delay_s: float) -> bool:
    """Sleep; True if stop was requested meanwhile."""
    if stop is None:
        await asyncio.sleep(delay_s)
        return False
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return False
    return True


async def retry_transient(
    stop: asyncio.Event, what: str, action: Callable[[], Awaitable[T]], health: Health | None = None
) -> tuple[bool, T | None]:
    """Run ``action`` until it does not raise a transient database error; (False, None) on stop."""
    delay = RETRY_INITIAL_S
    failing = False
    while True:
        try:
            result = await action()
            if failing and health is not None:
                health.set_ready("database available again")
            return True, result
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if not is_transient(exc):
                raise
            failing = True
            DB_RETRIES.inc()
            log.warning("%s failed (database unavailable?), retrying in %.1f s: %s", what, delay, exc)
            if health is not None:
                health.set_not_ready(f"database unavailable: {type(exc).__name__}")
        if await sleep_unless_stopped(stop, delay):
            return False, None
        delay = min(delay * 2, RETRY_MAX_S)
