"""``GET /v1/conversations/{id}/emails``: the conversation's summary email (``sendSummaryEmail``) and how it went.

An addition to Symbl's API, so a failed email is visible: ``status`` is ``requested`` (waiting for the
conversation to end, or being retried: ``attempts`` and ``lastError`` say so), ``sent`` or ``failed``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.routes import _json_errors, _owned_conversation, _sessions, authenticate
from convoscope.db.models import SummaryEmail
from convoscope.timestamps import iso_ms

__all__ = ["email_routes", "summary_email_json"]


def summary_email_json(row: SummaryEmail) -> dict[str, Any]:
    return {
        "recipients": list(row.recipients),
        "status": row.status,
        "attempts": row.attempts,
        "lastError": row.last_error,
        "requestedAt": iso_ms(row.requested_at_ms),
        "sentAt": iso_ms(row.sent_at_ms) if row.sent_at_ms is not None else None,
        "messageId": row.message_id,
    }


@_json_errors
async def get_emails(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/emails"""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        rows = list(await session.scalars(select(SummaryEmail).where(
            SummaryEmail.conversation_id == conversation.id, SummaryEmail.app_id == app_id)))
    return JSONResponse({"emails": [summary_email_json(row) for row in rows]})


def email_routes() -> list[BaseRoute]:
    return [Route("/v1/conversations/{conversation_id}/emails", get_emails, methods=["GET"])]
