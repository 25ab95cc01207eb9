"""Symbl-compatible REST endpoints: token generation and the Conversation API (symbl-api.md §1 and §4).

Handlers read ``request.app.state.sessions`` (async_sessionmaker), ``.tokens`` (TokenIssuer) and ``.settings``.
Every response, including errors, is JSON: mount ``api_exception_handlers()`` on the app for 404/405/500.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.serialize import conversation_json, member_json, message_json
from convoscope.auth import InvalidToken, TokenIssuer, token_from_request, verify_app
from convoscope.db.models import Conversation, Member, Message

__all__ = [
    "CONVERSATION_NOT_FOUND",
    "TOKEN_INVALID",
    "ApiError",
    "api_exception_handlers",
    "api_routes",
    "authenticate",
    "error_response",
]

log = logging.getLogger(__name__)

TOKEN_INVALID = "Token validation failed for provided token."
CONVERSATION_NOT_FOUND = "The conversationId is either invalid or does not exist."
BAD_CREDENTIALS = "Combination of appId and appSecret is not valid."
MAX_PAGE = 65_536
DEFAULT_PAGE = 20


def error_response(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status_code, headers=headers)


class ApiError(Exception):
    """Becomes a ``{"message": ...}`` JSON response with ``status_code``."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def _tokens(request: Request) -> TokenIssuer:
    return request.app.state.tokens  # type: ignore[no-any-return]


def authenticate(request: Request) -> str:
    """The app id of the request's token (any channel of symbl-api.md §1.2); raises a 401 ApiError otherwise."""
    token = token_from_request(request.headers, request.query_params)
    if not token:
        raise ApiError(401, TOKEN_INVALID)
    try:
        return _tokens(request).verify(token)
    except InvalidToken as exc:
        raise ApiError(401, TOKEN_INVALID) from exc


Handler = Callable[[Request], Awaitable[Response]]


def _json_errors(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status_code, exc.message)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


@_json_errors
async def generate_token(request: Request) -> Response:
    """POST /oauth2/token:generate ``{"type":"application","appId","appSecret"}`` -> ``{"accessToken","expiresIn"}``."""
    try:
        body: Any = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Request body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    grant_type = body.get("type", "application")
    if grant_type != "application":
        raise ApiError(400, f"Unsupported grant type {grant_type!r}; only 'application' is supported.")
    app_id, app_secret = body.get("appId"), body.get("appSecret")
    if not isinstance(app_id, str) or not app_id or not isinstance(app_secret, str) or not app_secret:
        raise ApiError(400, "appId and appSecret are required strings.")
    if not await verify_app(_sessions(request), app_id, app_secret):
        raise ApiError(401, BAD_CREDENTIALS)
    token, expires_in = _tokens(request).issue(app_id)
    return JSONResponse({"accessToken": token, "expiresIn": expires_in})


async def _owned_conversation(session: AsyncSession, app_id: str, conversation_id: str) -> Conversation:
    conversation = await session.scalar(
        select(Conversation).where(Conversation.id == conversation_id, Conversation.app_id == app_id)
    )
    if conversation is None:
        raise ApiError(404, CONVERSATION_NOT_FOUND)
    return conversation


async def _members(session: AsyncSession, conversation_id: str) -> list[Member]:
    rows = await session.scalars(
        select(Member).where(Member.conversation_id == conversation_id).order_by(Member.name, Member.id)
    )
    return list(rows)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in ("true", "1", "yes")


def _int_param(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer.") from None
    if not 0 <= value <= maximum:
        raise ApiError(400, f"{name} must be between 0 and {maximum}.")
    return value


def _time_param(request: Request, name: str) -> int | None:
    """An ISO-8601 query parameter as epoch ms (no zone: UTC), or None when absent."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO-8601 date-time such as 2024-05-01T12:00:00Z.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return round(moment.timestamp() * 1000)


@_json_errors
async def list_conversations(request: Request) -> Response:
    """GET /v1/conversations ``?limit&offset&order&startTime&endTime`` -> ``{"conversations": [...]}``, ordered by
    start time; ``startTime``/``endTime`` (ISO-8601) keep conversations that started within them."""
    app_id = authenticate(request)
    started_from, started_until = _time_param(request, "startTime"), _time_param(request, "endTime")
    limit = _int_param(request, "limit", DEFAULT_PAGE, MAX_PAGE)
    offset = _int_param(request, "offset", 0, 2**31 - 1)
    order = request.query_params.get("order", "asc").lower()
    if order not in ("asc", "desc"):
        raise ApiError(400, "order must be asc or desc.")
    ordering = (Conversation.start_ms, Conversation.id)
    if order == "desc":
        ordering = (Conversation.start_ms.desc(), Conversation.id.desc())
    async with _sessions(request)() as session:
        query = select(Conversation).where(Conversation.app_id == app_id).order_by(*ordering)
        if started_from is not None:
            query = query.where(Conversation.start_ms >= started_from)
        if started_until is not None:
            query = query.where(Conversation.start_ms <= started_until)
        conversations = list(await session.scalars(query.limit(limit).offset(offset)))
        members: dict[str, list[Member]] = {c.id: [] for c in conversations}
        if conversations:
            rows = await session.scalars(
                select(Member).where(Member.conversation_id.in_(list(members))).order_by(Member.name, Member.id)
            )
            for member in rows:
                members[member.conversation_id].append(member)
    return JSONResponse({"conversations": [conversation_json(c, members[c.id]) for c in conversations]})


@_json_errors
async def get_conversation(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}"""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        members = await _members(session, conversation.id)
    return JSONResponse(conversation_json(conversation, members))


@_json_errors
async def get_members(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/members"""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        members = await _members(session, conversation.id)
    return JSONResponse({"members": [member_json(member) for member in members]})


@_json_errors
async def get_messages(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/messages ``?verbose=true`` adds word timings and scores,
    ``?sentiment=true`` each message's polarity and suggested label."""
    app_id = authenticate(request)
    verbose = _flag(request, "verbose")
    with_sentiment = _flag(request, "sentiment")
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        members = {member.id: member for member in await _members(session, conversation.id)}
        messages = await session.scalars(
            select(Message)
            .where(Message.conversation_id == conversation.id)
            .order_by(Message.start_ms, Message.time_offset_s, Message.id)
        )
        body = [message_json(m, members.get(m.member_id), verbose=verbose) for m in messages]
    if with_sentiment:
        from processors.insights.sentiment import message_sentiment

        for message in body:
            message["sentiment"] = message_sentiment(message["text"]).as_json()
    return JSONResponse({"messages": body})


async def healthz(request: Request) -> Response:
    """GET /healthz: 200 when the database answers, else 503. No auth."""
    try:
        async with _sessions(request)() as session:
            await session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("health check: database unavailable: %s", exc)
        return JSONResponse({"status": "unavailable", "message": "database unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


def api_routes() -> list[BaseRoute]:
    from convoscope.api.conversations import conversation_routes  # it builds on this module's helpers
    from convoscope.api.openapi import openapi_routes
    from convoscope.api.webhooks import webhook_routes  # the webhook Management API, built on these helpers
    from producers.recorded.api import recorded_routes  # the Async API, also built on these helpers

    return [
        Route("/oauth2/token:generate", generate_token, methods=["POST"]),
        Route("/v1/conversations", list_conversations, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}", get_conversation, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/members", get_members, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/messages", get_messages, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        *conversation_routes(),
        *recorded_routes(),
        *webhook_routes(),
        *openapi_routes(),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


DATABASE_UNAVAILABLE = "The database is unavailable; nothing was changed. Try again in a few seconds."
DATABASE_RETRY_AFTER_S = 5


def database_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot be reached now (down, refusing, overloaded, too slow to answer),
    as opposed to a bug or a bad query."""
    if isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        # 08: connection exception; 57P: operator intervention (shutdown, cannot connect now); 53300: too many
        # connections; 55000: e.g. the database does not accept connections now.
        return sqlstate.startswith(("08", "57P")) or sqlstate in ("53300", "55000")
    if isinstance(exc, (OSError, TimeoutError)):
        # Raised raw by the driver while connecting; elsewhere (files, URLs) they are not about the database.
        return any("sqlalchemy" in frame.f_code.co_filename for frame, _ in traceback.walk_tb(exc.__traceback__))
    return False


async def _database_error(request: Request, exc: Exception) -> Response:
    if not database_unreachable(exc):
        return await _server_error(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, DATABASE_UNAVAILABLE, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "Internal server error.")


def api_exception_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """Pass to ``Starlette(exception_handlers=...)`` so 404/405/500 are JSON like the endpoints' own errors."""
    # Handled here rather than by the catch-all, so a database outage is a 503 the client can retry, not a 500.
    return {HTTPException: _http_error, SQLAlchemyError: _database_error, OSError: _database_error,
            TimeoutError: _database_error, Exception: _server_error}
