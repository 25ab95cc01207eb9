"""Conversation API for what the text processors found (symbl-api.md §4), and the tracker Management API.

GET /v1/conversations/{id}/questions | action-items | follow-ups | insights | topics | entities
GET /v1/conversations/{id}/trackers-detected (and the deprecated /trackers the SDKs call): a bare array
POST/GET /v1/manage/trackers, GET/PUT/DELETE /v1/manage/trackers/{tracker_id} (also under /v1/manage/tracker)
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from convoscope.api.routes import ApiError, _flag, _json_errors, _members, _owned_conversation, _sessions, authenticate
from convoscope.db.models import Entity, Insight, Member, MessageTopicPhrases, Tracker, TrackerMatch
from convoscope.ids import result_id
from convoscope.timestamps import now_ms

if TYPE_CHECKING:
    from processors.insights.topics import RankedTopic

__all__ = ["conversation_topics", "detected_trackers", "insight_json", "insight_routes"]

INSIGHT_KINDS = {"questions": "question", "action-items": "action_item", "follow-ups": "follow_up"}
RESPONSE_KEYS = {"question": "questions", "action_item": "actionItems", "follow_up": "followUps"}
MAX_TRACKERS_PER_REQUEST = 200
MAX_VOCABULARY = 500
MAX_PHRASE_CHARS = 200
TOPICS_LISTED = 20


def _member_json(member_id: str | None, name: str | None, email: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if member_id:
        body["id"] = member_id
    if name:
        body["name"] = name
    if email:
        body["userId"] = email
    return body


def _assignee(insight: Insight, members_by_name: dict[str, Member]) -> dict[str, Any] | None:
    if not insight.assignee_name:
        return None
    if insight.assignee_is_speaker:
        return {"id": insight.from_member_id, "name": insight.from_name or insight.assignee_name,
                **({"email": insight.from_user_id} if insight.from_user_id else {})}
    # "Maria, can you…": link to the member called Maria when there is one.
    member = members_by_name.get(insight.assignee_name.lower())
    if member is None:
        return {"name": insight.assignee_name}
    return {"id": member.id, "name": member.name or insight.assignee_name,
            **({"email": member.user_id} if member.user_id else {})}


def _members_by_name(members: list[Member]) -> dict[str, Member]:
    by_name: dict[str, Member] = {}
    for member in members:
        if member.name:
            by_name.setdefault(member.name.lower(), member)
            by_name.setdefault(member.name.split()[0].lower(), member)
    return by_name


def insight_json(insight: Insight, members_by_name: dict[str, Member]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": insight.id,
        "text": insight.text,
        "type": insight.type,
        "score": round(insight.confidence, 4),
        "messageIds": [insight.message_id],
        "from": _member_json(insight.from_member_id, insight.from_name, insight.from_user_id),
    }
    if insight.type != "question":
        entities: list[dict[str, Any]] = []
        assignee = _assignee(insight, members_by_name)
        if assignee:
            body["assignee"] = assignee
            entities.append({"type": "person", "text": insight.assignee_name, "offset": -1,
                             "value": {"assignee": True, "name": assignee.get("name")}})
        if insight.due_by:
            body["dueBy"] = insight.due_by
            entities.append({"type": "date", "text": insight.due_text or "", "offset": -1,
                             "value": insight.due_by[:10]})
        body["entities"] = entities
        body["phrases"] = []
        body["definitive"] = insight.confidence >= 0.8
    return body


async def _insights(request: Request, kind: str | None) -> list[dict[str, Any]]:
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        query = select(Insight).where(Insight.conversation_id == conversation.id)
        if kind is not None:
            query = query.where(Insight.type == kind)
        rows = list(await session.scalars(query.order_by(Insight.message_start_ms, Insight.char_offset)))
        members = _members_by_name(await _members(session, conversation.id))
    return [insight_json(row, members) for row in rows]


def _insight_list_handler(path_kind: str) -> Any:
    kind = INSIGHT_KINDS[path_kind]

    @_json_errors
    async def handler(request: Request) -> Response:
        return JSONResponse({RESPONSE_KEYS[kind]: await _insights(request, kind)})

    handler.__name__ = f"get_{kind}s"
    handler.__doc__ = f"GET /v1/conversations/{{conversation_id}}/{path_kind}"
    return handler


@_json_errors
async def get_insights(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/insights (legacy): questions, action items and follow-ups."""
    return JSONResponse({"insights": await _insights(request, None)})


async def conversation_topics(session: AsyncSession, conversation_id: str,
                              limit: int = TOPICS_LISTED) -> list[RankedTopic]:
    """The conversation's ranked topics, from the stored candidate phrases of its messages."""
    from processors.insights.topics import MessagePhrases, PhraseCandidate, rank_topics

    rows = list(await session.scalars(
        select(MessageTopicPhrases)
        .where(MessageTopicPhrases.conversation_id == conversation_id)
        .order_by(MessageTopicPhrases.message_start_ms, MessageTopicPhrases.message_id)
    ))
    messages = [
        MessagePhrases(
            message_id=row.message_id,
            candidates=tuple(PhraseCandidate(p["phrase"], tuple(p["root_words"]), p["offset"]) for p in row.phrases),
            sentiment=row.sentiment,
        )
        for row in rows
    ]
    return rank_topics(messages, limit=limit) if messages else []


@_json_errors
async def get_topics(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/topics ``?sentiment=true`` ``?parentRefs=true``"""
    app_id = authenticate(request)
    with_sentiment, with_parents = _flag(request, "sentiment"), _flag(request, "parentRefs")
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        ranked = await conversation_topics(session, conversation.id)
    topics = []
    for topic in ranked:
        body: dict[str, Any] = {
            "id": result_id("topic", conversation.id, topic.phrase.lower()),
            "text": topic.phrase,
            "type": "topic",
            "score": round(topic.score, 4),
            "messageIds": list(topic.message_ids),
        }
        if with_sentiment:
            body["sentiment"] = topic.sentiment.as_json()
        if with_parents:
            body["parentRefs"] = [{"type": "topic", "text": topic.parent}] if topic.parent else []
        topics.append(body)
    return JSONResponse({"topics": topics})


async def detected_trackers(session: AsyncSession, conversation_id: str) -> list[dict[str, Any]]:
    """Symbl's trackers-detected body: each tracker that matched, with its matched phrases and their messages."""
    rows = list(await session.scalars(
        select(TrackerMatch)
        .where(TrackerMatch.conversation_id == conversation_id)
        .order_by(TrackerMatch.tracker_name, TrackerMatch.message_start_ms, TrackerMatch.id)
    ))
    trackers: dict[str, dict[str, Any]] = {}
    for row in rows:
        tracker = trackers.setdefault(row.tracker_id, {"id": row.tracker_id, "name": row.tracker_name,
                                                       "matches": {}})
        match = tracker["matches"].setdefault(row.vocabulary, {
            "type": "vocabulary", "value": row.vocabulary, "messageRefs": [], "insightRefs": [],
        })
        match["messageRefs"].append({"id": row.message_id, "text": row.message_text, "offset": row.offset})
    return [{**t, "matches": list(t["matches"].values())} for t in trackers.values()]


async def _trackers_detected(request: Request) -> Response:
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        body = await detected_trackers(session, conversation.id)
    return JSONResponse(body)


@_json_errors
async def get_trackers_detected(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/trackers-detected: a bare array of trackers with their matches."""
    return await _trackers_detected(request)


@_json_errors
async def get_trackers_deprecated(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/trackers: deprecated by Symbl, still called by its SDKs."""
    return await _trackers_detected(request)


@_json_errors
async def get_entities(request: Request) -> Response:
    """GET /v1/conversations/{conversation_id}/entities: one entry per (type, value) with every mention."""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        conversation = await _owned_conversation(session, app_id, request.path_params["conversation_id"])
        rows = list(await session.scalars(
            select(Entity).where(Entity.conversation_id == conversation.id)
            .order_by(Entity.message_start_ms, Entity.offset)
        ))
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = grouped.setdefault((row.type, row.value.lower()), {
            "type": row.type, "subType": row.sub_type, "category": row.category,
            "value": row.value, "text": row.text, "messageRefs": [],
        })
        entry["messageRefs"].append({"id": row.message_id, "text": row.message_text, "offset": row.offset})
    return JSONResponse({"entities": list(grouped.values())})


# -- Management API: app trackers ----------------------------------------------------------------------------


def _tracker_json(tracker: Tracker) -> dict[str, Any]:
    return {"id": tracker.id, "name": tracker.name, "vocabulary": list(tracker.vocabulary)}


def _parse_tracker(body: Any, where: str) -> tuple[str, list[str]]:
    if not isinstance(body, dict):
        raise ApiError(400, f"{where} must be an object {{name, vocabulary}}.")
    name, vocabulary = body.get("name"), body.get("vocabulary")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ApiError(400, f"{where}.name must be a non-empty string of at most 200 characters.")
    if (not isinstance(vocabulary, list) or not vocabulary or len(vocabulary) > MAX_VOCABULARY
            or not all(isinstance(v, str) and v.strip() and len(v) <= MAX_PHRASE_CHARS for v in vocabulary)):
        raise ApiError(400, f"{where}.vocabulary must be a list of 1 to {MAX_VOCABULARY} non-empty strings "
                            f"of at most {MAX_PHRASE_CHARS} characters.")
    return name.strip(), list(dict.fromkeys(v.strip() for v in vocabulary))


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "Request body must be JSON.") from None


async def _owned_tracker(session: AsyncSession, app_id: str, tracker_id: str) -> Tracker:
    tracker = await session.scalar(select(Tracker).where(Tracker.id == tracker_id, Tracker.app_id == app_id))
    if tracker is None:
        raise ApiError(404, f"Tracker with id {tracker_id} does not exist.")
    return tracker


@_json_errors
async def create_trackers(request: Request) -> Response:
    """POST /v1/manage/trackers: one ``{name, vocabulary}`` (answers ``{"tracker"}``) or a list (``{"trackers"}``)."""
    app_id = authenticate(request)
    body = await _json_body(request)
    many = isinstance(body, list)
    items = body if many else [body]
    if not items or len(items) > MAX_TRACKERS_PER_REQUEST:
        raise ApiError(400, f"Send 1 to {MAX_TRACKERS_PER_REQUEST} trackers.")
    parsed = [_parse_tracker(item, f"trackers[{i}]" if many else "tracker") for i, item in enumerate(items)]
    if len({name.lower() for name, _ in parsed}) != len(parsed):
        raise ApiError(400, "Tracker names must be unique.")
    at = now_ms()
    created = []
    try:
        async with _sessions(request).begin() as session:
            existing = set(await session.scalars(select(Tracker.name).where(Tracker.app_id == app_id)))
            clash = sorted({n for n, _ in parsed} & existing, key=str.lower)
            if clash:
                raise ApiError(409, f"A tracker named {clash[0]!r} already exists.")
            for name, vocabulary in parsed:
                tracker = Tracker(id=str(uuid.uuid4()), app_id=app_id, name=name, vocabulary=vocabulary,
                                  created_at_ms=at, updated_at_ms=at)
                session.add(tracker)
                created.append(tracker)
    except IntegrityError:
        raise ApiError(409, "A tracker with that name already exists.") from None
    if many:
        return JSONResponse({"trackers": [_tracker_json(t) for t in created]}, status_code=201)
    return JSONResponse({"tracker": _tracker_json(created[0])}, status_code=201)


@_json_errors
async def list_trackers(request: Request) -> Response:
    """GET /v1/manage/trackers ``?name=``"""
    app_id = authenticate(request)
    query = select(Tracker).where(Tracker.app_id == app_id).order_by(Tracker.name)
    name = request.query_params.get("name")
    if name:
        query = query.where(Tracker.name == name)
    async with _sessions(request)() as session:
        trackers = list(await session.scalars(query))
    return JSONResponse({"trackers": [_tracker_json(t) for t in trackers]})


@_json_errors
async def get_tracker(request: Request) -> Response:
    """GET /v1/manage/trackers/{tracker_id}"""
    app_id = authenticate(request)
    async with _sessions(request)() as session:
        tracker = await _owned_tracker(session, app_id, request.path_params["tracker_id"])
    return JSONResponse({"tracker": _tracker_json(tracker)})


@_json_errors
async def update_tracker(request: Request) -> Response:
    """PUT /v1/manage/trackers/{tracker_id} ``{name, vocabulary}``: replaces both."""
    app_id = authenticate(request)
    name, vocabulary = _parse_tracker(await _json_body(request), "tracker")
    try:
        async with _sessions(request).begin() as session:
            tracker = await _owned_tracker(session, app_id, request.path_params["tracker_id"])
            tracker.name, tracker.vocabulary, tracker.updated_at_ms = name, vocabulary, now_ms()
    except IntegrityError:
        raise ApiError(409, f"A tracker named {name!r} already exists.") from None
    return JSONResponse({"tracker": _tracker_json(tracker)})


@_json_errors
async def delete_tracker(request: Request) -> Response:
    """DELETE /v1/manage/trackers/{tracker_id}: later conversations stop matching it; past matches stay."""
    app_id = authenticate(request)
    tracker_id = request.path_params["tracker_id"]
    async with _sessions(request).begin() as session:
        await _owned_tracker(session, app_id, tracker_id)
        await session.execute(delete(Tracker).where(Tracker.id == tracker_id, Tracker.app_id == app_id))
    return JSONResponse({"message": f"Tracker with id {tracker_id} deleted successfully."})


def insight_routes() -> list[BaseRoute]:
    conversation = "/v1/conversations/{conversation_id}"
    routes: list[BaseRoute] = [
        Route(f"{conversation}/{path}", _insight_list_handler(path), methods=["GET"]) for path in INSIGHT_KINDS
    ]
    routes += [
        Route(f"{conversation}/insights", get_insights, methods=["GET"]),
        Route(f"{conversation}/topics", get_topics, methods=["GET"]),
        Route(f"{conversation}/trackers-detected", get_trackers_detected, methods=["GET"]),
        Route(f"{conversation}/trackers", get_trackers_deprecated, methods=["GET"]),
        Route(f"{conversation}/entities", get_entities, methods=["GET"]),
    ]
    for base in ("/v1/manage/trackers", "/v1/manage/tracker"):
        routes += [
            Route(base, create_trackers, methods=["POST"]),
            Route(f"{base}/{{tracker_id}}", get_tracker, methods=["GET"]),
            Route(f"{base}/{{tracker_id}}", update_tracker, methods=["PUT"]),
            Route(f"{base}/{{tracker_id}}", delete_tracker, methods=["DELETE"]),
        ]
    routes.append(Route("/v1/manage/trackers", list_trackers, methods=["GET"]))
    return routes

