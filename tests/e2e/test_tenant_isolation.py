"""Two apps on one stack: nothing of one app is reachable, changeable or listed through the other's token, on
every endpoint the server documents (the list comes from the OpenAPI document, so a new endpoint is covered by
this test the day it is added)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
import pytest
import websockets

from convoscope.api.openapi import PATHS
from convoscope.auth import create_app as create_api_app
from convoscope.db import create_engine, session_factory
from producers.replay import fetch_token
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

# Valid bodies, so that a refusal can only come from whose data it is, never from a malformed request.
BODIES: dict[tuple[str, str], Any] = {
    ("/v1/conversations/{conversation_id}", "put"): {"metadata": {"owner": "stranger"}},
    ("/v1/conversations/{conversation_id}/members/{member_id}", "put"): {"name": "Stranger", "email": "s@x.example"},
    ("/v1/conversations/{conversation_id}/speakers", "put"): {"speakerEvents": [
        {"type": "started_speaking", "user": {"id": "s", "name": "Stranger"}, "offset": {"seconds": 0, "nanos": 0}},
        {"type": "stopped_speaking", "user": {"id": "s", "name": "Stranger"}, "offset": {"seconds": 9, "nanos": 0}},
    ]},
    ("/v1/conversations/{conversation_id}/transcript", "post"): {"contentType": "text/markdown"},
    ("/v1/conversations/{conversation_id}/experiences", "post"): {"name": "verbose-text-summary"},
    ("/v1/manage/trackers/{tracker_id}", "put"): {"name": "Stolen", "vocabulary": ["stolen"]},
    ("/v1/manage/tracker/{tracker_id}", "put"): {"name": "Stolen", "vocabulary": ["stolen"]},
    ("/v1/process/audio/url/{conversation_id}", "put"): {"url": "http://127.0.0.1:9/none.wav"},
    ("/v1/event/{connection_id}", "post"): {"type": "started_speaking", "user": {"name": "Stranger"}},
}


async def _second_app(stack: RunningStack) -> str:
    engine = create_engine(stack.stack.settings)
    try:
        other = await create_api_app(session_factory(engine), f"stranger-{uuid.uuid4().hex[:6]}")
    finally:
        await engine.dispose()
    return await fetch_token(stack.base_url, other.app_id, other.app_secret)


async def _owned_ids(stack: RunningStack, client: httpx.AsyncClient) -> dict[str, str]:
    conversation_id, job_id = await stack.recorded_conversation()
    tracker = await client.post("/v1/manage/trackers", json={"name": f"Owned {uuid.uuid4().hex[:6]}",
                                                              "vocabulary": ["owned phrase"]})
    assert tracker.status_code == 201, tracker.text
    ids = {"conversation_id": conversation_id, "job_id": job_id, "tracker_id": tracker.json()["tracker"]["id"],
           "member_id": str(uuid.uuid4()), "connection_id": str(uuid.uuid4())}
    members = (await client.get(f"/v1/conversations/{conversation_id}/members")).json()["members"]
    if members:
        ids["member_id"] = members[0]["id"]
    if "/v1/manage/webhooks" in PATHS:
        webhook = await client.post("/v1/manage/webhooks", json={
            "url": "http://127.0.0.1:9/hook", "eventTypes": ["conversation.completed"]})
        assert webhook.status_code == 201, webhook.text
        ids["webhook_id"] = webhook.json()["webhook"]["id"]
    return ids


async def test_another_app_reaches_nothing_on_any_endpoint(sqlite_stack: RunningStack) -> None:
    stranger = await _second_app(sqlite_stack)
    async with sqlite_stack.api() as owner:
        ids = await _owned_ids(sqlite_stack, owner)
        before = {path: (await owner.get(path)).json() for path in (
            f"/v1/conversations/{ids['conversation_id']}", f"/v1/manage/trackers/{ids['tracker_id']}")}

    checked = []
    async with sqlite_stack.api(stranger) as client:
        # Deletes last, so every other request still finds the owner's data in place.
        operations = sorted(((path, method) for path, item in PATHS.items() for method in item
                             if "{" in path), key=lambda op: op[1] == "delete")
        for path, method in operations:
            names = re.findall(r"{(\w+)}", path)
            assert set(names) <= set(ids), f"no owned id for {path}: add one to _owned_ids"
            url = path.format(**ids)
            body = BODIES.get((path, method))
            if path.startswith("/v1/process/audio/{"):
                response = await client.request(method.upper(), url, content=b"RIFF", headers={
                    "content-type": "audio/wav"})
            else:
                response = await client.request(method.upper(), url, json=body)
            # 404, exactly as for an id that does not exist: the stranger learns nothing, not even existence.
            assert response.status_code == 404, f"{method.upper()} {path}: {response.status_code} {response.text}"
            checked.append((method, path))
        # Lists of the stranger's app hold none of the owner's things.
        lists = [await client.get(path) for path in (
            "/v1/conversations?limit=1000", "/v1/manage/trackers",
            *(["/v1/manage/webhooks"] if "webhook_id" in ids else []))]
        assert [r.status_code for r in lists] == [200] * len(lists)
        listed = json.dumps([r.json() for r in lists])
        for kind in ("conversation_id", "tracker_id", "webhook_id"):
            if kind in ids:
                assert ids[kind] not in listed, kind

    # The owner's things are as they were: nothing the stranger sent changed or deleted them.
    async with sqlite_stack.api() as owner:
        for path, body in before.items():
            assert (await owner.get(path)).json() == body
    assert len(checked) >= 30, checked

    # The live WebSocket views: a stranger cannot listen to the owner's conversation page feed.
    base = sqlite_stack.base_url.replace("http", "ws", 1)
    feed = f"{base}/live/conversations/{ids['conversation_id']}"
    async with websockets.connect(feed, additional_headers={"x-api-key": stranger}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004
