"""The conversation page, for people: what was said and what came of it, live while the conversation goes on.

GET  /conversations/{id}                       HTML; ``?token=`` a signed view link, or an app's access token
WS   /live/conversations/{id}                 the page's live feed (``?token=`` the view token the page carries)
GET  /static/conversation-live.js              the page's script
POST /v1/conversations/{id}/experiences        Symbl's "experience" URL: a signed link to the page

A conversation is reachable only with a token of its app: a view token (signed, expiring, for one conversation),
or an access token. Unknown ids and other apps' ids get the same 404, so a page cannot be found by guessing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
from importlib.resources import files
from typing import Any

import jinja2
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from convoscope.api.conversations import _json_object
from convoscope.api.report import ConversationReport, load_report
from convoscope.api.routes import (
    ApiError,
    _json_errors,
    _owned_conversation,
    _sessions,
    authenticate,
)
from convoscope.auth import InvalidToken, TokenIssuer, token_from_request
from convoscope.db.models import Conversation, Member, Message
from convoscope.services import Services
from convoscope.view_links import conversation_page_url
from sinks.live.relay import relay_conversation
from sinks.live.symbl_format import conversation_completed

__all__ = ["page_routes", "render_conversation_page"]

log = logging.getLogger(__name__)

LIVE_TOKEN_TTL_S = 12 * 3600
"""How long the view token embedded in a page (for its live feed) lasts: a working day of watching."""
EXPERIENCE_NAMES = ("verbose-text-summary", "video-summary")
SCRIPT = files("convoscope.api").joinpath("static/conversation-live.js").read_text(encoding="utf-8")
INSIGHT_SECTIONS = (("action_item", "Action items"), ("follow_up", "Follow-ups"), ("question", "Questions"))

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("convoscope.api", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class PageError(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def _clock(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def _duration_text(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 60:
        return f"{round(seconds)} s"
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _due(iso: str) -> str:
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).strftime("%a %d %b %Y")
    except ValueError:
        return iso


def render_conversation_page(report: ConversationReport, *, live_url: str, nonce: str) -> str:
    """The page's HTML: pure, so it can be checked without a server."""
    started = dt.datetime.fromtimestamp(report.start_ms / 1000, dt.UTC)
    title = report.title or f"Conversation {report.conversation_id}"
    return _templates.get_template("conversation.html").render(
        report=report,
        title=title,
        nonce=nonce,
        live_url=live_url,
        started_iso=started.isoformat().replace("+00:00", "Z"),
        started_text=started.strftime("%a %d %b %Y, %H:%M UTC"),
        duration_text=("running for " if report.in_progress else "") + _duration_text(report.duration_s),
        insight_sections=INSIGHT_SECTIONS,
        clock=_clock,
        due=_due,
    )


def _page_headers(nonce: str) -> dict[str, str]:
    # The view token is in the URL: no referrer may carry it away, and no cache may keep the page.
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'self'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }


def _error_page(status_code: int, message: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    body = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>convoscope</title>"
        f"<style nonce=\"{nonce}\">body{{font:16px system-ui,sans-serif;margin:15vh auto;max-width:520px;"
        "color:#1d2330}</style></head>"
        f"<body><h1>{'Not found' if status_code == 404 else 'Link not valid'}</h1><p>{message}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status_code, headers=_page_headers(nonce))


def _tokens(services: Services) -> TokenIssuer:
    return services.tokens


def _app_for_conversation(tokens: TokenIssuer, conversation_id: str, headers: Any, query: Any) -> str:
    """The app whose token came with the request: a view token for this conversation, or an access token."""
    view_token = query.get("token")
    if view_token:
        try:
            return tokens.verify_view_token(view_token, conversation_id)
        except InvalidToken:
            raise PageError(401, "This link has expired or is not valid. Ask for a new link to the conversation."
                            ) from None
    access_token = token_from_request(headers, query)
    if access_token:
        try:
            return tokens.verify(access_token)
        except InvalidToken:
            raise PageError(401, "The access token is not valid or has expired.") from None
    raise PageError(401, "Open this page from its link: it carries the key to the conversation.")


async def _conversation(services: Services, app_id: str, conversation_id: str) -> Conversation:
    async with services.sessions() as session:
        conversation = await session.scalar(
            select(Conversation).where(Conversation.id == conversation_id, Conversation.app_id == app_id)
        )
    if conversation is None:
        raise PageError(404, "There is no such conversation, or this link is not for it.")
    return conversation


async def conversation_page(request: Request) -> Response:
    services: Services = request.app.state.services
    conversation_id = request.path_params["conversation_id"]
    try:
        app_id = _app_for_conversation(_tokens(services), conversation_id, request.headers, request.query_params)
        conversation = await _conversation(services, app_id, conversation_id)
    except PageError as exc:
        return _error_page(exc.status_code, exc.message)
    report = await load_report(services.sessions, services.settings, conversation)
    live_token = _tokens(services).issue_view_token(app_id, conversation_id, LIVE_TOKEN_TTL_S)
    nonce = secrets.token_urlsafe(16)
    html = render_conversation_page(
        report, live_url=f"/live/conversations/{conversation_id}?token={live_token}", nonce=nonce
    )
    return HTMLResponse(html, headers=_page_headers(nonce))


async def page_script(request: Request) -> Response:
    return Response(SCRIPT, media_type="text/javascript", headers={"Cache-Control": "public, max-age=300",
                                                                    "X-Content-Type-Options": "nosniff"})


async def _stored_messages(services: Services, conversation_id: str) -> list[dict[str, Any]]:
    """message_response bodies of what is stored: sent after subscribing, so nothing finalised in between is lost
    (the page skips ids it already shows)."""
    async with services.sessions() as session:
        members = {m.id: m for m in await session.scalars(
            select(Member).where(Member.conversation_id == conversation_id))}
        rows = list(await session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.start_ms)))
    return [{
        "id": row.id,
        "from": {"name": (members[row.member_id].name if row.member_id in members else None) or "Unknown speaker"},
        "payload": {"content": row.text, "contentType": "text/plain"},
        "duration": {"timeOffset": row.time_offset_s, "duration": row.duration_s},
    } for row in rows]


async def live_feed(websocket: WebSocket) -> None:
    """The page's live feed: every result of the conversation as Symbl streams it, until it completes."""
    services: Services = websocket.app.state.services
    conversation_id = websocket.path_params["conversation_id"]
    await websocket.accept()
    try:
        app_id = _app_for_conversation(_tokens(services), conversation_id, websocket.headers, websocket.query_params)
        conversation = await _conversation(services, app_id, conversation_id)
    except PageError as exc:
        await websocket.close(4001 if exc.status_code == 401 else 4004, exc.message[:120])
        return
    async def catch_up() -> None:
        stored = await _stored_messages(services, conversation_id)
        if stored:
            await websocket.send_text(json.dumps({"type": "message_response", "messages": stored}))
        if conversation.end_ms is not None:
            await websocket.send_text(json.dumps(conversation_completed(conversation_id)))

    await relay_conversation(websocket, services.hub, conversation_id, catch_up)


@_json_errors
async def create_experience(request: Request) -> Response:
    """POST /v1/conversations/{id}/experiences ``{"name": "verbose-text-summary"}`` -> ``{"name", "url"}``: a signed
    link to the conversation page (Symbl's Summary UI). ``expiresIn`` (seconds) shortens or extends the link."""
    app_id = authenticate(request)
    body = await _json_object(request)
    name = body.get("name", "verbose-text-summary")
    if name not in EXPERIENCE_NAMES:
        raise ApiError(400, f"name must be one of {', '.join(EXPERIENCE_NAMES)}.")
    expires_in = body.get("expiresIn")
    if expires_in is not None and (not isinstance(expires_in, int) or isinstance(expires_in, bool)
                                   or not 60 <= expires_in <= 366 * 86_400):
        raise ApiError(400, "expiresIn must be a number of seconds between 60 and 31622400.")
    services: Services = request.app.state.services
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
    url = conversation_page_url(services.settings, services.tokens, app_id, conversation.id, ttl_s=expires_in)
    return JSONResponse({"name": name, "url": url})


def page_routes() -> list[BaseRoute]:
    return [
        Route("/conversations/{conversation_id}", conversation_page, methods=["GET"]),
        WebSocketRoute("/live/conversations/{conversation_id}", live_feed),
        Route("/static/conversation-live.js", page_script, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/experiences", create_experience, methods=["POST"]),
    ]
