"""The conversation page in a real browser (Debian's chromium, driven by Playwright): it updates live while the
meeting streams, shows the finished conversation as the API reports it, and opens only with a valid link."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import Page, async_playwright

from convoscope.auth import create_app as create_api_app
from convoscope.auth import load_token_issuer
from convoscope.db import create_engine, session_factory
from convoscope.synth import Meeting
from producers.replay import fetch_token
from producers.replay.client import ReceivedMessage
from tests.e2e.conftest import MEETING_TITLE, RunningStack
from tests.e2e.test_summary_email import SUMMARY_EMAIL_ACTIONS, check_meeting_summary_email
from tests.email.smtp_server import SmtpServer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM = shutil.which("chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


async def _page_link(stack: RunningStack, conversation_id: str, **body: Any) -> str:
    async with stack.api() as client:
        response = await client.post(f"/v1/conversations/{conversation_id}/experiences",
                                     json={"name": "verbose-text-summary", **body})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "verbose-text-summary"
    return str(response.json()["url"])


async def _texts(page: Page, selector: str) -> list[str]:
    return [text.strip() for text in await page.locator(selector).all_inner_texts()]


async def test_page_follows_the_meeting_live_then_shows_the_whole_conversation(
    sqlite_stack: RunningStack, meeting: Meeting, stack_smtp_server: SmtpServer
) -> None:
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is required for the page tests (scripts/setup.sh test installs it)")
    conversation: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on_message(message: ReceivedMessage) -> None:
        inner = message.body.get("message") or {}
        if inner.get("type") == "conversation_created" and not conversation.done():
            conversation.set_result(inner["data"]["conversationId"])

    emails_before = len(stack_smtp_server.mailbox.received)
    call = asyncio.create_task(sqlite_stack.stream_meeting(
        meeting, on_message=on_message, insight_types=["question", "action_item", "follow_up", "topic"],
        actions=SUMMARY_EMAIL_ACTIONS))
    conversation_id = await asyncio.wait_for(conversation, 30)
    link = await _page_link(sqlite_stack, conversation_id)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(link)
            assert await page.locator("#title").inner_text() == f"{MEETING_TITLE}Live"
            await page.wait_for_selector("body[data-live-socket=open]", timeout=10_000)
            at_load = await page.locator("#transcript li[data-message-id]").count()
            # A final spoken after the page loaded appears without a reload, while the call goes on.
            # (Polled from here: the page's CSP forbids the eval that wait_for_function would need.)
            lines_now = page.locator("#transcript li[data-message-id]")
            for _ in range(600):
                if await lines_now.count() > at_load or call.done():
                    break
                await asyncio.sleep(0.1)
            assert await lines_now.count() > at_load
            assert not call.done(), "the transcript should grow while the meeting is still streaming"
            live_lines = await _texts(page, "#transcript li[data-message-id]")

            speakers = await call
            # When the conversation completes the page says so, then reloads into the finished page.
            await page.wait_for_selector("#status.ended", timeout=30_000)
            await page.wait_for_selector("#summary li", timeout=30_000)
            lines = await _texts(page, "#transcript li[data-message-id]")
            participants = await page.locator("#participants").inner_text()
            shown_items = " ".join(await _texts(page, "#action_items li, #questions li, #follow_ups li"))
            bars = await page.locator("#talk-time rect.bar").count()
            assert errors == []
        finally:
            call.cancel()
            ARTIFACTS.mkdir(exist_ok=True)
            if "page" in locals():
                await page.screenshot(path=str(ARTIFACTS / "conversation-page.png"), full_page=True)
            await browser.close()

    stored = await sqlite_stack.stored_messages(conversation_id, expected=len(meeting.utterances))
    # The page shows the transcript the API returns, in order, each line with its speaker.
    assert len(lines) == len(stored)
    for line, message in zip(lines, stored, strict=True):
        assert message["text"] in line and message["from"]["name"] in line
    assert set(live_lines) <= set(lines)
    assert {s.conversation_id for s in speakers} == {conversation_id}

    assert all(name in participants for name in meeting.speakers)
    assert bars == len(meeting.speakers)
    async with sqlite_stack.api() as client:
        insights = (await client.get(f"/v1/conversations/{conversation_id}/insights")).json()["insights"]
    assert any(item["type"] == "action_item" for item in insights), "the demo meeting has action items"
    for item in insights:
        assert item["text"] in shown_items

    # The meeting asked for its summary email, which links this page, signed: the link opens it.
    emailed_link = await check_meeting_summary_email(sqlite_stack, stack_smtp_server, emails_before, conversation_id)
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(emailed_link)).status_code == 200


async def test_page_opens_only_with_a_valid_link_of_its_app(sqlite_stack: RunningStack) -> None:
    (first, _), (second, _) = await asyncio.gather(sqlite_stack.recorded_conversation(),
                                                   sqlite_stack.recorded_conversation())
    link = await _page_link(sqlite_stack, first)
    base = sqlite_stack.base_url
    token = link.split("token=", 1)[1]
    engine = create_engine(sqlite_stack.stack.settings)
    try:
        other = await create_api_app(session_factory(engine), "page-stranger")
        issuer = await load_token_issuer(sqlite_stack.stack.settings, session_factory(engine))
    finally:
        await engine.dispose()
    stranger = await fetch_token(base, other.app_id, other.app_secret)

    async with httpx.AsyncClient(base_url=base) as client:
        opened = await client.get(f"/conversations/{first}", params={"token": token})
        assert opened.status_code == 200 and "text/html" in opened.headers["content-type"]
        assert opened.headers["referrer-policy"] == "no-referrer"
        assert "script-src 'self'" in opened.headers["content-security-policy"]
        # The app's own access token opens it too (for people signed in to a tool built on the API).
        assert (await client.get(f"/conversations/{first}", headers={"x-api-key": sqlite_stack.token})
                ).status_code == 200
        # No token, a tampered one, a link of another conversation, an access token used as a link: refused.
        assert (await client.get(f"/conversations/{first}")).status_code == 401
        assert (await client.get(f"/conversations/{first}", params={"token": token[:-2] + "xx"})).status_code == 401
        assert (await client.get(f"/conversations/{second}", params={"token": token})).status_code == 401
        assert (await client.get(f"/conversations/{first}", params={"token": sqlite_stack.token})).status_code == 401
        # Another app's access token finds nothing, exactly as for an id that does not exist.
        foreign = await client.get(f"/conversations/{first}", headers={"x-api-key": stranger})
        missing = await client.get("/conversations/1234567", headers={"x-api-key": sqlite_stack.token})
        assert foreign.status_code == missing.status_code == 404
        assert foreign.text.split("</style>")[1] == missing.text.split("</style>")[1]
        # Experiences: other apps cannot mint links to it; bad bodies are explained.
        assert (await client.post(f"/v1/conversations/{first}/experiences", headers={"x-api-key": stranger},
                                  json={"name": "verbose-text-summary"})).status_code == 404
        bad = await client.post(f"/v1/conversations/{first}/experiences", headers={"x-api-key": sqlite_stack.token},
                                json={"name": "slideshow"})
        assert bad.status_code == 400 and "verbose-text-summary" in bad.json()["message"]

        # A link that has expired no longer opens the page.
        expired = issuer.issue_view_token(sqlite_stack.app_id, first, 60, now_s=int(time.time()) - 120)
        assert (await client.get(f"/conversations/{first}", params={"token": expired})).status_code == 401

    live = base.replace("http", "ws", 1) + f"/live/conversations/{first}?token={token[:-2]}xx"
    async with websockets.connect(live) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
