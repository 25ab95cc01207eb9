"""`convoscope demo`: the whole stack on embedded defaults, a synthesized meeting streamed live, the result."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid

import httpx

from convoscope.console import LiveTranscriptPrinter
from convoscope.embedded_broker import free_port
from convoscope.settings import Settings
from convoscope.stack import Stack
from convoscope.synth import DEMO_SCRIPT, SynthesisUnavailable, build_meeting
from producers.replay import fetch_token, stream_pcm

__all__ = ["run_demo"]

STORE_WAIT_S = 20.0


async def _stored_messages(base_url: str, token: str, conversation_id: str, expected: int) -> list[dict]:
    """The store sink writes asynchronously: poll until it has caught up."""
    deadline = time.monotonic() + STORE_WAIT_S
    messages: list[dict] = []
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": token}, timeout=10) as client:
        while time.monotonic() < deadline:
            response = await client.get(f"/v1/conversations/{conversation_id}/messages")
            if response.status_code == 200:
                messages = response.json()["messages"]
                if len(messages) >= expected:
                    break
            await asyncio.sleep(0.5)
    return messages


async def _conversation_results(base_url: str, token: str, conversation_id: str) -> dict[str, list[dict]]:
    """Insights, topics and summary from the Conversation API, once the text processors' results are stored."""
    path = f"/v1/conversations/{conversation_id}"
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": token}, timeout=30) as client:
        insights: list[dict] = []
        deadline = time.monotonic() + STORE_WAIT_S
        while time.monotonic() < deadline:  # until two reads in a row agree: the store has caught up
            again = (await client.get(f"{path}/insights")).json()["insights"]
            if again and len(again) == len(insights):
                break
            insights = again
            await asyncio.sleep(1.0)
        topics = (await client.get(f"{path}/topics")).json()["topics"]
        summary = (await client.get(f"{path}/summary")).json()["summary"]
    return {"insights": insights, "topics": topics, "summary": summary}


def _print_results(results: dict[str, list[dict]]) -> None:
    labels = {"question": "Questions", "action_item": "Action items", "follow_up": "Follow-ups"}
    for kind, label in labels.items():
        found = [i for i in results["insights"] if i["type"] == kind]
        if not found:
            continue
        print(f"{label}:")
        for item in found:
            owner = (item.get("assignee") or {}).get("name")
            due = (item.get("dueBy") or "")[:10]
            extra = ", ".join(part for part in (f"owner {owner}" if owner else "", f"due {due}" if due else "") if part)
            print(f"  - {item['from'].get('name')}: {item['text']}" + (f"  ({extra})" if extra else ""))
    if results["topics"]:
        print("Topics:", ", ".join(t["text"] for t in results["topics"][:6]))
    if results["summary"]:
        print("Summary:")
        for item in results["summary"]:
            print(f"  - {item['text']}")


async def run_demo(args: argparse.Namespace) -> int:
    # The demo's output is the transcript: keep start-up chatter (migrations, topics) out of it.
    logging.getLogger().setLevel(logging.WARNING)
    try:
        meeting = build_meeting(DEMO_SCRIPT)
    except SynthesisUnavailable as exc:
        print(f"error: {exc}")
        return 2
    settings = Settings(port=args.port if args.port is not None else free_port())
    print("Starting convoscope: embedded Kafka-protocol broker, SQLite at", settings.database_url.split("///")[-1],
          f"and the Whisper {settings.asr_model} model …", flush=True)
    async with Stack(settings, quiet_children=True) as stack:
        base_url = stack.settings.base_url()
        app_id, app_secret = await stack.app_credentials("demo")
        token = await fetch_token(base_url, app_id, app_secret)
        connection_id = str(uuid.uuid4())
        ws_url = base_url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        print(f"Stack ready at {base_url}. Streaming a {meeting.duration_s:.0f}-second meeting between "
              f"{' and '.join(meeting.speakers)} in real time, one WebSocket connection per speaker:\n", flush=True)
        printer = LiveTranscriptPrinter()
        start_at = time.monotonic() + 0.5
        results = await asyncio.gather(*[
            stream_pcm(
                ws_url, token, meeting.track_bytes(name),
                speaker={"name": name, "userId": f"{name.lower()}@example.com"},
                start_request={"insightTypes": ["question", "action_item", "follow_up"],
                               "config": {"meetingTitle": "Launch planning (convoscope demo)",
                                          "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}}},
                start_at=start_at,
                # Every connection receives the whole conversation; print one view of it.
                on_message=printer if index == 0 else None,
            )
            for index, name in enumerate(meeting.speakers)
        ])
        printer.close()
        conversation_id = results[0].conversation_id
        finals = results[0].final_messages()
        stored = await _stored_messages(base_url, token, str(conversation_id), len(finals))
        print(f"\nConversation {conversation_id}: {len(stored)} messages stored in the database.")
        print(json.dumps({"id": conversation_id, "messages": [
            {"from": m["from"].get("name"), "text": m["text"], "startTime": m["startTime"]} for m in stored
        ]}, indent=2))
        print("\nWhat the text processors found (GET .../insights, .../topics, .../summary):")
        _print_results(await _conversation_results(base_url, token, str(conversation_id)))
        async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": token}, timeout=30) as client:
            page_url = (await client.post(f"/v1/conversations/{conversation_id}/experiences",
                                          json={"name": "verbose-text-summary"})).json()["url"]
    print(f"\nThe conversation is kept in {settings.database_url.split('///')[-1]}. Fetch it from the API "
          f"(the token is valid for {settings.token_ttl_s // 3600} h):\n"
          f"  .venv/bin/convoscope up --port {settings.port}   # in another terminal\n"
          f"  curl -H 'x-api-key: {token}' \\\n"
          f"      {base_url}/v1/conversations/{conversation_id}/messages\n"
          f"or read it in a browser, by its signed link (valid {settings.view_link_ttl_s // 86_400} days):\n"
          f"  {page_url}")
    return 0
