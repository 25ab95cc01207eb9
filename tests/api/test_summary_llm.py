"""Abstractive summaries from an OpenAI-compatible chat endpoint: a real HTTP server on this machine answers like
one, and when it fails, answers garbage or is too slow, the summary falls back to the extractive one and says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from convoscope.auth import create_app, load_token_issuer
from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from tests.api.conftest import build_app
from tests.api.test_conversation_api import Api, _seed

pytestmark = pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)

SUMMARY_POINTS = [
    "Ann opened the review of the launch plan.",
    "Bob said the payment system needs more testing and will send the payment test report on Thursday.",
    "Ann will talk to the marketing team about the announcement.",
]


@dataclass
class ChatServer:
    """Behaves like an OpenAI chat completions endpoint, or fails the way ``mode`` says."""

    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def completions(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if self.mode == "error":
            return JSONResponse({"error": {"message": "model overloaded"}}, status_code=503)
        if self.mode == "slow":
            await asyncio.sleep(3)
        if self.mode == "garbage":
            return JSONResponse({"unexpected": True})
        content = "\n".join(f"- {point}" for point in SUMMARY_POINTS)
        return JSONResponse({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        })


@pytest_asyncio.fixture
async def chat_server() -> AsyncIterator[ChatServer]:
    chat = ChatServer()
    port = free_port()
    app = Starlette(routes=[Route("/v1/chat/completions", chat.completions, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.02)
    chat.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield chat
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest_asyncio.fixture
async def llm_api(database_url: str, db_sessions: async_sessionmaker[AsyncSession], chat_server: ChatServer
                  ) -> AsyncIterator[Api]:
    settings = Settings(database_url=database_url, jwt_secret=None, llm_url=chat_server.url, llm_model="tiny-chat",
                        llm_api_key="sk-test", llm_timeout_s=1.0)
    tokens = await load_token_issuer(settings, db_sessions)
    credentials = await create_app(db_sessions, "llm test")
    token, _ = tokens.issue(credentials.app_id)
    transport = httpx.ASGITransport(app=build_app(settings, db_sessions, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
        yield Api(client, db_sessions, tokens, credentials, token)


async def test_abstractive_summary_from_the_chat_endpoint(llm_api: Api, chat_server: ChatServer) -> None:
    cid, _, _ = await _seed(llm_api)
    body = (await llm_api.client.get(f"/v1/conversations/{cid}/summary", headers=llm_api.auth())).json()
    assert body["producedBy"]["method"] == "abstractive" and body["producedBy"]["model"] == "tiny-chat"
    assert [item["text"] for item in body["summary"]] == SUMMARY_POINTS
    (request,) = chat_server.requests
    assert request["authorization"] == "Bearer sk-test" and request["body"]["model"] == "tiny-chat"
    transcript = request["body"]["messages"][-1]["content"]
    assert "Ann: Good morning everyone." in transcript and "Bob: Yes, I will send" in transcript
    messages = (await llm_api.client.get(f"/v1/conversations/{cid}/messages", headers=llm_api.auth())).json()
    text_of = {m["id"]: m["text"] for m in messages["messages"]}
    # Each point is linked to what was said about it.
    assert any("Thursday" in text_of[ref["id"]] for ref in body["summary"][1]["messageRefs"])
    assert any("marketing" in text_of[ref["id"]] for ref in body["summary"][2]["messageRefs"])


@pytest.mark.parametrize(("mode", "reason"), [
    ("error", "HTTP 503"), ("slow", "no answer within 1 s"), ("garbage", "not a chat completion"),
])
async def test_falls_back_to_extractive(llm_api: Api, chat_server: ChatServer, mode: str, reason: str) -> None:
    chat_server.mode = mode
    cid, _, _ = await _seed(llm_api)
    body = (await llm_api.client.get(f"/v1/conversations/{cid}/summary", headers=llm_api.auth())).json()
    assert body["producedBy"]["method"] == "extractive" and "model" not in body["producedBy"]
    assert body["producedBy"]["fallbackReason"].startswith(reason)
    assert body["summary"] and all(item["messageRefs"] for item in body["summary"])
    assert len(chat_server.requests) == 1

    chat_server.mode = "ok"  # the service is back: refresh asks again
    body = (await llm_api.client.get(f"/v1/conversations/{cid}/summary", params={"refresh": "true"},
                                     headers=llm_api.auth())).json()
    assert body["producedBy"]["method"] == "abstractive"


async def test_unreachable_endpoint_falls_back(database_url: str, db_sessions: async_sessionmaker[AsyncSession]
                                               ) -> None:
    settings = Settings(database_url=database_url, llm_url=f"http://127.0.0.1:{free_port()}/v1", llm_timeout_s=2)
    tokens = await load_token_issuer(settings, db_sessions)
    credentials = await create_app(db_sessions, f"unreachable {uuid.uuid4()}")
    token, _ = tokens.issue(credentials.app_id)
    transport = httpx.ASGITransport(app=build_app(settings, db_sessions, tokens))
    async with httpx.AsyncClient(transport=transport, base_url="http://convoscope.test") as client:
        api = Api(client, db_sessions, tokens, credentials, token)
        cid, _, _ = await _seed(api)
        body = (await client.get(f"/v1/conversations/{cid}/summary", headers=api.auth())).json()
    assert body["producedBy"]["method"] == "extractive"
    assert body["producedBy"]["fallbackReason"].startswith("request failed: ConnectError")
