"""``sendSummaryEmail`` accepted, or refused with a clear error, by both ingest paths, and carried to the store."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from convoscope.db.models import SummaryEmail
from producers.actions import SUMMARY_EMAILS_ATTRIBUTE, parse_recipients_attribute, recipients_attribute
from producers.sip.requests import ConnectStart, TelephonyRequestError, parse_connect_request
from producers.websocket.protocol import ProtocolError, StartRequest, parse_client_message
from schemas.topics import CONVERSATION_EVENTS
from sinks.store.writer import StoreRecord, write_batch


def _action(emails: Any, name: str = "sendSummaryEmail", invoke_on: str = "stop") -> dict[str, Any]:
    return {"invokeOn": invoke_on, "name": name, "parameters": {"emails": emails}}


GOOD = [_action(["ann@example.com", "Ben.Lee+calls@mail.example.org", "ann@example.com"])]
BAD: list[tuple[Any, str]] = [
    ([_action(["a@example.com"], name="sendSms")], "unknown action 'sendSms'"),
    ([{"invokeOn": "stop", "name": "sendSummaryEmail"}], "parameters must be an object"),
    ([_action([])], "non-empty list of email addresses"),
    ([_action("ann@example.com")], "non-empty list of email addresses"),
    ([_action(["ann@example.com", "not-an-email"])], "emails[1] ('not-an-email') is not an email address"),
    ([_action(["ann@example.com\r\nBcc: everyone@example.com"])], "is not an email address"),
    ([_action(["Ann <ann@example.com>"])], "is not an email address"),
    ([_action([f"user{i}@example.com" for i in range(51)])], "at most 50 are allowed"),
    ([_action(["ann@example.com"], invoke_on="start")], "use invokeOn \"stop\""),
    ([{"name": "sendSummaryEmail"}], "invokeOn"),
    ({"emails": ["ann@example.com"]}, "actions must be a list"),
]


def _telephony(actions: Any) -> dict[str, Any]:
    return {"operation": "start", "endpoint": {"type": "sip", "uri": "sip:8021@pbx.example.com"}, "actions": actions}


def _start_request(actions: Any) -> str:
    return json.dumps({"type": "start_request", "actions": actions,
                       "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}})


def test_telephony_start_accepts_the_action() -> None:
    start = parse_connect_request(_telephony(GOOD))
    assert isinstance(start, ConnectStart)
    assert start.summary_emails == ("ann@example.com", "Ben.Lee+calls@mail.example.org")
    assert start.actions == tuple(GOOD)  # passed on as sent, in the START command


def test_start_request_accepts_the_action() -> None:
    request = parse_client_message(_start_request(GOOD))
    assert isinstance(request, StartRequest)
    assert request.summary_emails == ("ann@example.com", "Ben.Lee+calls@mail.example.org")
    plain = parse_client_message(_start_request(None))
    assert isinstance(plain, StartRequest) and plain.summary_emails == ()


@pytest.mark.parametrize(("actions", "message"), BAD)
def test_telephony_refuses_bad_actions(actions: Any, message: str) -> None:
    with pytest.raises(TelephonyRequestError) as caught:
        parse_connect_request(_telephony(actions))
    assert message in str(caught.value)


@pytest.mark.parametrize(("actions", "message"), BAD)
def test_start_request_refuses_bad_actions(actions: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(_start_request(actions))
    assert caught.value.message == "Bad request"
    assert message in caught.value.details


def test_recipients_attribute_round_trip() -> None:
    attributes = recipients_attribute(["ann@example.com", "ben@example.org"])
    assert attributes == {SUMMARY_EMAILS_ATTRIBUTE: "ann@example.com,ben@example.org"}
    assert parse_recipients_attribute(attributes) == ["ann@example.com", "ben@example.org"]
    assert recipients_attribute([]) == {}
    assert parse_recipients_attribute({SUMMARY_EMAILS_ATTRIBUTE: "x@y.z, <bad>"}) == ["x@y.z"]


def _event(conversation_id: str, app_id: str, kind: str, subject: str, emails: list[str]) -> StoreRecord:
    value = {
        "event_id": f"{conversation_id}/{kind}/{subject}", "conversation_id": conversation_id, "app_id": app_id,
        "type": kind, "at_ms": 1_700_000_000_000, "stream_id": subject if kind == "STREAM_STARTED" else None,
        "member": None, "name": None, "final_count": None,
        "attributes": {"source": "websocket", **recipients_attribute(emails)},
    }
    # Through the Avro schema, as the store worker gets it.
    serde = CONVERSATION_EVENTS.serde
    return StoreRecord(CONVERSATION_EVENTS.name, serde.deserialize(serde(value)))


async def test_store_merges_requests_of_every_speaker(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    conversation_id, app_id = str(uuid.uuid4().int)[:18], uuid.uuid4().hex
    await write_batch(db_sessions, [
        _event(conversation_id, app_id, "STREAM_STARTED", "s1", ["ann@example.com", "ben@example.org"]),
        _event(conversation_id, app_id, "STREAM_STARTED", "s2", ["Ben@example.org", "cat@example.net"]),
        _event(conversation_id, app_id, "STREAM_STARTED", "s3", []),
    ])
    # A replay after a crash changes nothing.
    await write_batch(db_sessions, [
        _event(conversation_id, app_id, "STREAM_STARTED", "s1", ["ann@example.com", "ben@example.org"]),
    ])
    async with db_sessions() as session:
        row = await session.get(SummaryEmail, conversation_id)
    assert row is not None
    assert (row.app_id, row.status, row.attempts) == (app_id, "requested", 0)
    assert row.recipients == ["ann@example.com", "ben@example.org", "cat@example.net"]
    other = str(uuid.uuid4().int)[:18]
    await write_batch(db_sessions, [_event(other, app_id, "STREAM_STARTED", "s9", [])])
    async with db_sessions() as session:
        assert await session.get(SummaryEmail, other) is None
