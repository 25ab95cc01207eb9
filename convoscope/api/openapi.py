"""The OpenAPI 3.1 document of the REST API, served at ``GET /openapi.json``.

To document a new endpoint, add one entry to ``PATHS`` below (path → method → operation, built with ``operation``)
and, for a new body shape, a schema to ``SCHEMAS``. ``tests/api/test_openapi.py`` fails when the server serves a
route that is missing here, and the end-to-end test validates real responses of a running stack against these
schemas (and runs schemathesis against it), so the document cannot drift from what the server returns.

Schemas are closed (``additionalProperties: false``) where convoscope alone decides the shape, so an undocumented
field fails the tests too.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["PATHS", "SCHEMAS", "openapi_document", "openapi_routes", "operation"]

Schema = dict[str, Any]

# --- schema helpers ---------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
ISO_TIME: Schema = {"type": "string", "format": "date-time"}
ANY_OBJECT: Schema = {"type": "object"}
MESSAGE_ONLY = obj({"message": STRING})

# --- component schemas ------------------------------------------------------------------------------

_percent_seconds = obj({"percentage": NUMBER, "seconds": NUMBER})
_sentiment = obj({"polarity": obj({"score": NUMBER}), "suggested": {"enum": ["positive", "negative", "neutral"]}})
_message_ref = obj({"id": STRING, "text": STRING, "offset": INTEGER})

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"message": STRING}, {"statusCode": INTEGER}),
    "TokenRequest": obj({"appId": STRING, "appSecret": STRING}, {"type": {"enum": ["application"]}}, closed=False),
    "Token": obj({"accessToken": STRING, "expiresIn": INTEGER}),
    "Member": obj({"id": STRING, "name": nullable(STRING)}, {"email": STRING}),
    "Speaker": obj({}, {"id": STRING, "name": nullable(STRING), "userId": STRING, "email": STRING}),
    "Word": obj({"word": STRING, "startTime": ISO_TIME, "endTime": ISO_TIME, "score": nullable(NUMBER),
                 "timeOffset": NUMBER, "duration": NUMBER}),
    "Message": obj(
        {"id": STRING, "text": STRING, "from": ref("Speaker"), "startTime": ISO_TIME, "endTime": ISO_TIME,
         "timeOffset": NUMBER, "duration": NUMBER, "conversationId": STRING},
        {"words": array(ref("Word")), "sentiment": _sentiment},
    ),
    "Conversation": obj({"id": STRING, "type": STRING, "name": STRING, "startTime": ISO_TIME,
                         "endTime": nullable(ISO_TIME), "members": array(ref("Member")), "metadata": ANY_OBJECT}),
    "MetadataUpdate": obj({"metadata": ANY_OBJECT}, closed=False),
    "MemberUpdate": obj({}, {"id": STRING, "name": STRING, "email": STRING}, closed=False),
    "SpeakerEvents": obj({"speakerEvents": {**array(obj(
        {"type": {"enum": ["started_speaking", "stopped_speaking"]},
         "user": obj({}, {"id": STRING, "name": STRING, "email": STRING, "userId": STRING}, closed=False),
         "offset": obj({}, {"seconds": NUMBER, "nanos": NUMBER}, closed=False)},
        closed=False,
    )), "minItems": 1}}, closed=False),
    "Analytics": obj({
        "metrics": array(obj({"type": {"enum": ["total_silence", "total_talk_time", "total_overlap"]},
                              "percent": NUMBER, "seconds": NUMBER})),
        "members": array(obj(
            {"id": STRING, "name": STRING, "pace": obj({"wpm": INTEGER}), "talkTime": _percent_seconds,
             "listenTime": _percent_seconds,
             "overlap": obj({"overlapDuration": NUMBER, "overlappingMembers": array(obj(
                 {"id": STRING, "name": STRING, "percent": NUMBER, "seconds": NUMBER, "interruptions": INTEGER},
                 {"userId": STRING}))}),
             "turns": INTEGER, "longestMonologue": obj({"seconds": NUMBER}), "wordCount": INTEGER},
            {"userId": STRING},
        )),
        "duration": NUMBER,
        "silences": array(obj({"timeOffset": NUMBER, "duration": NUMBER})),
    }),
    "Summary": obj({
        "summary": array(obj({"id": STRING, "text": STRING, "messageRefs": array(obj({"id": STRING}))},
                             {"startTime": ISO_TIME, "endTime": ISO_TIME})),
        "producedBy": obj({"method": {"enum": ["extractive", "abstractive"]}, "createdAt": ISO_TIME},
                          {"model": STRING, "fallbackReason": STRING}),
    }),
    "TranscriptRequest": obj({}, {
        "contentType": {"enum": ["text/markdown", "text/srt"]},
        "createParagraphs": BOOLEAN,
        "showSpeakerSeparation": BOOLEAN,
        "phrases": obj({}, {"highlightOnlyInsightKeyPhrases": BOOLEAN, "highlightAllKeyPhrases": BOOLEAN},
                       closed=False),
    }, closed=False),
    "Transcript": obj({"transcript": obj({"payload": STRING, "contentType": {"enum": ["text/markdown", "text/srt"]}})}),
    "Insight": obj(
        {"id": STRING, "text": STRING, "type": {"enum": ["question", "action_item", "follow_up"]}, "score": NUMBER,
         "messageIds": array(STRING), "from": ANY_OBJECT},
        {"assignee": ANY_OBJECT, "dueBy": STRING, "entities": array(ANY_OBJECT), "phrases": array(ANY_OBJECT),
         "definitive": BOOLEAN},
    ),
    "Topic": obj({"id": STRING, "text": STRING, "type": {"const": "topic"}, "score": NUMBER,
                  "messageIds": array(STRING)},
                 {"sentiment": _sentiment, "parentRefs": array(obj({"type": STRING, "text": STRING}))}),
    "TrackerDetected": obj({"id": STRING, "name": STRING, "matches": array(obj(
        {"type": STRING, "value": STRING, "messageRefs": array(_message_ref), "insightRefs": array(ANY_OBJECT)}))}),
    "Entity": obj({"type": STRING, "subType": nullable(STRING), "category": STRING, "value": STRING, "text": STRING,
                   "messageRefs": array(_message_ref)}),
    "Tracker": obj({"id": STRING, "name": STRING, "vocabulary": array(STRING)}),
    "TrackerInput": obj({"name": STRING, "vocabulary": {**array(STRING), "minItems": 1}}, closed=False),
    "JobAccepted": obj({"conversationId": STRING, "jobId": STRING}),
    "Job": obj(
        {"id": STRING, "status": {"enum": ["scheduled", "in_progress", "completed", "failed"]},
         "conversationId": STRING, "type": STRING, "audioDuration": NUMBER, "transcribedDuration": NUMBER,
         "createdAt": ISO_TIME, "updatedAt": ISO_TIME},
        {"sourceConversationId": STRING, "error": STRING},
    ),
    "Webhook": obj({"id": STRING, "url": STRING, "eventTypes": array(STRING), "conversationId": nullable(STRING),
                    "createdAt": ISO_TIME}, {"secret": STRING}),
    "WebhookInput": obj(
        {"url": STRING, "eventTypes": {**array({"enum": ["conversation.completed", "message.final",
                                                         "insight.detected", "tracker.matched", "job.completed",
                                                         "job.failed"]}), "minItems": 1}},
        {"conversationId": STRING, "secret": STRING}, closed=False),
    "WebhookDelivery": obj({
        "id": STRING, "eventId": STRING, "eventType": STRING, "conversationId": nullable(STRING),
        "status": {"enum": ["pending", "delivered", "dead"]}, "attempts": INTEGER,
        "lastStatusCode": nullable(INTEGER), "lastError": nullable(STRING), "createdAt": ISO_TIME,
        "updatedAt": ISO_TIME, "nextAttemptAt": nullable(ISO_TIME), "deliveredAt": nullable(ISO_TIME)}),
    "SummaryEmail": obj({
        "recipients": array(STRING), "status": {"enum": ["requested", "sent", "failed"]}, "attempts": INTEGER,
        "lastError": nullable(STRING), "requestedAt": ISO_TIME, "sentAt": nullable(ISO_TIME),
        "messageId": nullable(STRING)}),
    "Reprocess": obj({
        "jobs": array(obj({"conversationId": STRING, "jobId": STRING, "sourceConversationId": STRING})),
        "skipped": array(obj({"conversationId": STRING, "status": INTEGER, "reason": STRING})),
    }),
}

# --- operations -------------------------------------------------------------------------------------

_ERRORS = {
    "400": "Bad request",
    "401": "Missing or invalid token",
    "404": "Not found (or owned by another app)",
    "409": "Conflict",
    "413": "Too large",
    "415": "Unsupported media type",
    "429": "Too many jobs",
    "503": "A backing service is unavailable; retry",
}


def _json(schema: Schema) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def operation(
    summary: str,
    ok: Schema | None,
    *,
    tag: str,
    status: str = "200",
    errors: tuple[str, ...] = ("401", "404"),
    query: dict[str, Schema] | None = None,
    body: Schema | None = None,
    body_type: str = "application/json",
    auth: bool = True,
    ok_type: str = "application/json",
) -> dict[str, Any]:
    """One operation: its success response (``ok`` in ``ok_type``), the errors it may answer with ``Error``."""
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {}}
    op["responses"][status] = {"description": "OK", "content": {ok_type: {"schema": ok or STRING}}}
    for code in errors:
        op["responses"][code] = {"description": _ERRORS[code], **_json(ref("Error"))}
    if query:
        op["parameters"] = [{"name": name, "in": "query", "required": False, "schema": schema}
                            for name, schema in query.items()]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {body_type: {"schema": body}}}
    if not auth:
        op["security"] = []
    return op


_FLAG: Schema = {"type": "string", "enum": ["true", "false"]}
_CONVERSATION = "/v1/conversations/{conversation_id}"
_ASYNC_OPTIONS: dict[str, Schema] = {
    name: STRING for name in ("name", "webhookUrl", "customVocabulary", "confidenceThreshold", "detectEntities",
                              "enableAllTrackers", "trackers", "enableSeparateRecognitionPerChannel", "channelMetadata",
                              "languageCode", "mode", "enableSpeakerDiarization", "diarizationSpeakerCount",
                              "metadata", "redaction")
}
_async_errors = ("400", "401", "413", "415", "429", "503")
_process_audio = operation("Submit a recording (the request body is the file)", ref("JobAccepted"), tag="Async",
                           status="201", errors=_async_errors, query=_ASYNC_OPTIONS,
                           body={"type": "string", "format": "binary"}, body_type="application/octet-stream")
_process_url = operation("Submit a recording by URL (http(s), or file:// under CONVOSCOPE_MEDIA_DIRS)",
                         ref("JobAccepted"), tag="Async", status="201", errors=_async_errors,
                         body=obj({"url": STRING}, closed=False))
_tracker_ops = {
    "post": operation("Create a tracker (an object) or several (a list)", obj({}, {
        "tracker": ref("Tracker"), "trackers": array(ref("Tracker"))}), tag="Management", status="201",
        errors=("400", "401", "409"), body={"anyOf": [ref("TrackerInput"), array(ref("TrackerInput"))]}),
}
_tracker_item_ops = {
    "get": operation("A tracker", obj({"tracker": ref("Tracker")}), tag="Management"),
    "put": operation("Replace a tracker's name and vocabulary", obj({"tracker": ref("Tracker")}), tag="Management",
                     errors=("400", "401", "404", "409"), body=ref("TrackerInput")),
    "delete": operation("Delete a tracker", MESSAGE_ONLY, tag="Management"),
}

_html_page = {"content": {"text/html": {"schema": STRING}}}
_conversation_page = {
    **operation("The conversation page (HTML) for people: by a signed link (?token=) or an access token",
                STRING, tag="Pages", errors=(), query={"token": STRING}, ok_type="text/html"),
    "responses": {"200": {"description": "OK", **_html_page},
                  "401": {"description": "No valid link or token", **_html_page},
                  "404": {"description": "No such conversation for this app", **_html_page}},
}

PATHS: dict[str, dict[str, dict[str, Any]]] = {
    "/oauth2/token:generate": {"post": operation(
        "Generate an access token", ref("Token"), tag="Auth", errors=("400", "401"), body=ref("TokenRequest"),
        auth=False)},
    "/v1/conversations": {"get": operation(
        "List conversations", obj({"conversations": array(ref("Conversation"))}), tag="Conversations",
        errors=("400", "401"),
        query={"limit": {"type": "integer", "minimum": 0, "maximum": 65536},
               "offset": {"type": "integer", "minimum": 0},
               "order": {"enum": ["asc", "desc"]}, "startTime": ISO_TIME, "endTime": ISO_TIME})},
    _CONVERSATION: {
        "get": operation("A conversation", ref("Conversation"), tag="Conversations"),
        "put": operation("Replace a conversation's metadata", obj({"id": STRING, "metadata": ANY_OBJECT}),
                         tag="Conversations", errors=("400", "401", "404"), body=ref("MetadataUpdate")),
        "delete": operation("Delete a conversation and everything derived from it", MESSAGE_ONLY,
                            tag="Conversations", errors=("401", "404", "503")),
    },
    f"{_CONVERSATION}/messages": {"get": operation(
        "Messages (verbose=true: word timings; sentiment=true: sentiment)", obj({"messages": array(ref("Message"))}),
        tag="Conversations", query={"verbose": _FLAG, "sentiment": _FLAG})},
    f"{_CONVERSATION}/members": {"get": operation(
        "Members", obj({"members": array(ref("Member"))}), tag="Conversations")},
    f"{_CONVERSATION}/members/{{member_id}}": {"put": operation(
        "Rename a member", MESSAGE_ONLY, tag="Conversations", errors=("400", "401", "404"), body=ref("MemberUpdate"))},
    f"{_CONVERSATION}/speakers": {"put": operation(
        "Assign messages to speakers by speaker events", MESSAGE_ONLY, tag="Conversations",
        errors=("400", "401", "404"), body=ref("SpeakerEvents"))},
    f"{_CONVERSATION}/analytics": {"get": operation(
        "Talk time, listen time, silence, overlap and pace", ref("Analytics"), tag="Conversations")},
    f"{_CONVERSATION}/summary": {"get": operation(
        "Summary (extractive, or abstractive when an LLM is configured)", ref("Summary"), tag="Conversations",
        query={"refresh": _FLAG})},
    f"{_CONVERSATION}/emails": {"get": operation(
        "The summary email (sendSummaryEmail action): recipients, status, attempts, last error",
        obj({"emails": array(ref("SummaryEmail"))}), tag="Conversations")},
    f"{_CONVERSATION}/transcript": {"post": operation(
        "Formatted transcript (Markdown or SRT)", ref("Transcript"), tag="Conversations",
        errors=("400", "401", "404"), body=ref("TranscriptRequest"))},
    f"{_CONVERSATION}/questions": {"get": operation(
        "Questions", obj({"questions": array(ref("Insight"))}), tag="Insights")},
    f"{_CONVERSATION}/action-items": {"get": operation(
        "Action items", obj({"actionItems": array(ref("Insight"))}), tag="Insights")},
    f"{_CONVERSATION}/follow-ups": {"get": operation(
        "Follow-ups", obj({"followUps": array(ref("Insight"))}), tag="Insights")},
    f"{_CONVERSATION}/insights": {"get": operation(
        "Questions, action items and follow-ups (legacy)", obj({"insights": array(ref("Insight"))}), tag="Insights")},
    f"{_CONVERSATION}/topics": {"get": operation(
        "Topics", obj({"topics": array(ref("Topic"))}), tag="Insights",
        query={"sentiment": _FLAG, "parentRefs": _FLAG})},
    f"{_CONVERSATION}/trackers-detected": {"get": operation(
        "Tracker matches (a bare array)", array(ref("TrackerDetected")), tag="Insights")},
    f"{_CONVERSATION}/trackers": {"get": operation(
        "Tracker matches (deprecated path the SDKs call)", array(ref("TrackerDetected")), tag="Insights")},
    f"{_CONVERSATION}/entities": {"get": operation(
        "Entities", obj({"entities": array(ref("Entity"))}), tag="Insights")},
    f"{_CONVERSATION}/experiences": {"post": operation(
        "A signed, expiring link to the conversation page (Symbl's summary UI)",
        obj({"name": STRING, "url": STRING}), tag="Conversations", errors=("400", "401", "404"),
        body=obj({}, {"name": {"enum": ["verbose-text-summary", "video-summary"]},
                      "expiresIn": {"type": "integer", "minimum": 60, "maximum": 31622400}}, closed=False))},
    "/conversations/{conversation_id}": {"get": _conversation_page},
    "/static/conversation-live.js": {"get": operation(
        "The conversation page's script", STRING, tag="Pages", errors=(), auth=False, ok_type="text/javascript")},
    "/v1/manage/trackers": {
        **_tracker_ops,
        "get": operation("Trackers of the app", obj({"trackers": array(ref("Tracker"))}), tag="Management",
                         errors=("401",), query={"name": STRING}),
    },
    "/v1/manage/tracker": _tracker_ops,
    "/v1/manage/trackers/{tracker_id}": _tracker_item_ops,
    "/v1/manage/tracker/{tracker_id}": _tracker_item_ops,
    "/v1/manage/webhooks": {
        "post": operation("Register a webhook (the answer shows its signing secret, once)",
                          obj({"webhook": ref("Webhook")}), tag="Webhooks", status="201",
                          errors=("400", "401", "409"), body=ref("WebhookInput")),
        "get": operation("Webhooks of the app", obj({"webhooks": array(ref("Webhook"))}), tag="Webhooks",
                         errors=("401",)),
    },
    "/v1/manage/webhooks/{webhook_id}": {
        "get": operation("A webhook", obj({"webhook": ref("Webhook")}), tag="Webhooks"),
        "delete": operation("Delete a webhook and its delivery log", MESSAGE_ONLY, tag="Webhooks"),
    },
    "/v1/manage/webhooks/{webhook_id}/deliveries": {"get": operation(
        "The webhook's delivery log, newest first", obj({"deliveries": array(ref("WebhookDelivery"))}),
        tag="Webhooks", errors=("400", "401", "404"),
        query={"status": {"enum": ["pending", "delivered", "dead"]},
               "limit": {"type": "integer", "minimum": 0, "maximum": 1000}})},
    "/v1/process/audio": {"post": _process_audio},
    "/v1/process/audio/{conversation_id}": {"put": {**_process_audio, "summary": "Append a recording"}},
    "/v1/process/audio/url": {"post": _process_url},
    "/v1/process/audio/url/{conversation_id}": {"put": {**_process_url, "summary": "Append a recording by URL"}},
    "/v1/job/{job_id}": {"get": operation("Job status", ref("Job"), tag="Async")},
    "/v1/process/reprocess": {"post": operation(
        "Re-transcribe stored conversations with the current model", ref("Reprocess"), tag="Async",
        errors=("400", "401", "429", "503"),
        body=obj({}, {"conversationId": STRING, "conversationIds": array(STRING),
                      "since": {"anyOf": [ISO_TIME, INTEGER]}}, closed=False))},
    "/v1/endpoint:connect": {"post": operation(
        "Telephony: start an outbound SIP call into a new conversation, or stop one", obj(
            {"connectionId": STRING, "conversationId": STRING, "eventUrl": STRING, "resultWebSocketUrl": STRING},
            {"summaryInfo": array(obj({"url": STRING}))}),
        tag="Telephony", errors=("400", "401", "404", "409", "503"),
        body=obj({"operation": {"enum": ["start", "stop"]}}, closed=False))},
    "/v1/event/{connection_id}": {"post": operation(
        "Telephony: push speaker events into a live call", obj({"connectionId": STRING, "accepted": BOOLEAN}),
        tag="Telephony", status="202", errors=("400", "401", "404"), body=ANY_OBJECT)},
    "/healthz": {"get": operation("Liveness: the database answers", obj({"status": {"const": "ok"}}), tag="Operations",
                                  errors=(), auth=False)},
    "/metrics": {"get": operation("Prometheus metrics", STRING, tag="Operations", errors=(), auth=False,
                                  ok_type="text/plain")},
    "/openapi.json": {"get": operation("This document", ANY_OBJECT, tag="Operations", errors=(), auth=False)},
}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
    return [{"name": name, "in": "path", "required": True, "schema": STRING} for name in names]


@lru_cache(maxsize=8)
def _document(base_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, operations in PATHS.items():
        item: dict[str, Any] = copy.deepcopy(operations)
        if parameters := _path_parameters(path):
            item["parameters"] = parameters
        paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "convoscope",
            "version": "1",
            "description": "Symbl.ai-compatible Conversation, Async and Management APIs. Authenticate with the "
                           "accessToken from /oauth2/token:generate as x-api-key or Authorization: Bearer.",
        },
        "servers": [{"url": base_url}],
        "security": [{"apiKey": []}, {"bearer": []}],
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    return copy.deepcopy(_document(base_url))


async def get_openapi(request: Request) -> Response:
    """GET /openapi.json (no auth)."""
    settings = getattr(request.app.state, "settings", None)
    base_url = settings.base_url() if settings is not None and settings.public_url else str(request.base_url)
    return JSONResponse(_document(base_url.rstrip("/") or "/"))


def openapi_routes() -> list[BaseRoute]:
    return [Route("/openapi.json", get_openapi, methods=["GET"])]
