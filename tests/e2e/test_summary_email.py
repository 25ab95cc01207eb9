"""A meeting streamed live with ``sendSummaryEmail`` in each speaker's start_request: when it completes, the stack's
email worker sends one summary email, to every address either speaker named, to a real SMTP server."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from convoscope.embedded_broker import free_port
from convoscope.synth import Meeting
from producers.replay import stream_pcm
from tests.e2e.conftest import MEETING_TITLE, RunningStack
from tests.email.smtp_server import Received, SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EMAILS_BY_SPEAKER = {"Alice": ["lead@example.com", "notes@example.com"], "Bob": ["notes@example.com",
                                                                                 "bob.boss@example.org"]}


async def test_streamed_meeting_sends_its_summary_email(sqlite_stack: RunningStack, meeting: Meeting,
                                                        stack_smtp_server: SmtpServer) -> None:
    already = len(stack_smtp_server.mailbox.received)
    connection_id = str(uuid.uuid4())
    start_at = time.monotonic() + 0.5
    results = await asyncio.gather(*[
        stream_pcm(
            sqlite_stack.ws_url(connection_id), sqlite_stack.token, meeting.track_bytes(name),
            speaker={"name": name, "userId": f"{name.lower()}@example.com"},
            start_request={
                "config": {"meetingTitle": MEETING_TITLE,
                           "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
                "insightTypes": ["question", "action_item"],
                "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail",
                             "parameters": {"emails": EMAILS_BY_SPEAKER.get(name, [])}}],
            },
            start_at=start_at,
        )
        for name in meeting.speakers
    ])
    conversation_id = results[0].conversation_id
    assert conversation_id and all(r.conversation_id == conversation_id for r in results)

    received = await asyncio.to_thread(stack_smtp_server.mailbox.wait_for, already + 1, 90)
    mine = [r for r in received[already:] if conversation_id in r.message.get_body(("plain",)).get_content()]
    assert len(mine) == 1, f"{len(received) - already} new emails, {len(mine)} for conversation {conversation_id}"
    mail = mine[0]
    assert sorted(mail.recipients) == sorted({e for emails in EMAILS_BY_SPEAKER.values() for e in emails})
    assert mail.message["Subject"] == f"Summary: {MEETING_TITLE}"
    plain = mail.message.get_body(("plain",)).get_content()
    html = mail.message.get_body(("html",)).get_content()
    for text in (plain, html):
        assert MEETING_TITLE in text and "Alice" in text and "Bob" in text
        assert "payment" in text.lower() and "test report" in text.lower()  # the meeting's own words
        assert f"/conversations/{conversation_id}?token=" in text

    async with sqlite_stack.api() as client:
        answer = await client.get(f"/v1/conversations/{conversation_id}/emails")
    assert answer.status_code == 200
    [shown] = answer.json()["emails"]
    assert shown["status"] == "sent" and shown["messageId"] == mail.message["Message-ID"]
    await asyncio.sleep(2)  # nothing else arrives for it
    later = [r for r in stack_smtp_server.mailbox.received[already:]
             if conversation_id in r.message.get_body(("plain",)).get_content()]
    assert len(later) == 1


async def test_telephony_call_sends_its_summary_email(sqlite_stack: RunningStack,
                                                      stack_smtp_server: SmtpServer) -> None:
    """The Telephony API path: the action rides on the call's start event. Nobody answers this call (a SIP URI
    nothing listens on), so the email says that nothing was transcribed."""
    already = len(stack_smtp_server.mailbox.received)
    async with sqlite_stack.api() as client:
        response = await client.post("/v1/endpoint:connect", json={
            "operation": "start",
            "endpoint": {"type": "sip", "uri": f"sip:nobody@127.0.0.1:{free_port()}"},
            "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail",
                         "parameters": {"emails": ["oncall@example.com"]}}],
            "data": {"session": {"name": "Support call"}},
        })
        assert response.status_code == 200, response.text
        conversation_id = response.json()["conversationId"]
        refused = await client.post("/v1/endpoint:connect", json={
            "operation": "start", "endpoint": {"type": "sip", "uri": "sip:a@127.0.0.1"},
            "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["nope"]}}],
        })
        assert refused.status_code == 400 and "is not an email address" in refused.json()["message"]

    deadline = time.monotonic() + 60
    mine: list[Received] = []
    while not mine and time.monotonic() < deadline:
        received = await asyncio.to_thread(stack_smtp_server.mailbox.wait_for, already + 1, 5)
        mine = [r for r in received[already:] if conversation_id in r.message.get_body(("plain",)).get_content()]
    assert len(mine) == 1
    assert mine[0].recipients == ["oncall@example.com"]
    assert mine[0].message["Subject"] == "Summary: Support call"
    assert "nothing was transcribed" in mine[0].message.get_body(("plain",)).get_content()
