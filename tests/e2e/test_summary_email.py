"""Summary emails through the whole stack, to a real SMTP server: a Telephony call with ``sendSummaryEmail``, and
the check of a meeting streamed live with the action in each speaker's start_request (the conversation page's
test streams that meeting, so it is streamed once for both)."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from convoscope.embedded_broker import free_port
from tests.e2e.conftest import MEETING_TITLE, RunningStack
from tests.email.smtp_server import Received, SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

EMAILS_BY_SPEAKER = {"Alice": ["lead@example.com", "notes@example.com"], "Bob": ["notes@example.com",
                                                                                 "bob.boss@example.org"]}


SUMMARY_EMAIL_ACTIONS = {name: [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": emails}}]
                         for name, emails in EMAILS_BY_SPEAKER.items()}
"""Each speaker's start_request ``actions`` (tests/e2e/test_conversation_page.py streams the meeting with them)."""


async def check_meeting_summary_email(stack: RunningStack, smtp: SmtpServer, already: int,
                                      conversation_id: str) -> str:
    """The one email a meeting streamed with SUMMARY_EMAIL_ACTIONS sends: to every address either speaker named,
    with the meeting's own words in both parts, recorded as sent in the API. Returns the page link it carries."""
    received = await asyncio.to_thread(smtp.mailbox.wait_for, already + 1, 90)
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

    async with stack.api() as client:
        answer = await client.get(f"/v1/conversations/{conversation_id}/emails")
    assert answer.status_code == 200
    [shown] = answer.json()["emails"]
    assert shown["status"] == "sent" and shown["messageId"] == mail.message["Message-ID"]
    await asyncio.sleep(2)  # nothing else arrives for it
    later = [r for r in smtp.mailbox.received[already:]
             if conversation_id in r.message.get_body(("plain",)).get_content()]
    assert len(later) == 1
    link = re.search(r"https?://\S+/conversations/\d+\?token=[\w.-]+", plain)
    assert link, plain
    return link.group(0)


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
