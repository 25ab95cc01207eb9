"""Through the whole stack: a synthesized meeting in which the speakers talk over each other (one connection each)
gives the talk time and overlap the script says, live (the analytics topic) and final (``GET .../analytics``);
every REST response of the live server matches the OpenAPI document; and schemathesis finds no server error.

Tolerances: talk time within ±3 % and overlap within ±0.3 s of the scripted timings. Whisper's word times are
accurate to about a tenth of a second at utterance edges, and each stream's place on the conversation timeline
comes from when its connection started (a few tens of milliseconds apart here).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
from sqlalchemy import select

from convoscope.auth import create_app
from convoscope.db import create_engine, session_factory
from convoscope.db.models import Member, Message
from convoscope.synth import Line, Meeting, SynthesisUnavailable, build_meeting
from processors.analytics.talk_time import intersect, measure, merge
from producers.replay import StreamResult, fetch_token
from tests.analytics.reading import latest_analytics
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

OVERLAPPING_SCRIPT = (
    Line("Alice", "Good morning everyone. Today we will go over the launch plan for next quarter."),
    Line("Bob", "Thanks Alice. The new pricing page is ready, but the payment system still needs more testing.",
         pause_before_s=0.0, overlap_s=1.2),
    Line("Alice", "Can you finish the payment tests before Friday?", pause_before_s=1.5),
    Line("Bob", "Yes, I will send the test report to everyone on Thursday.", pause_before_s=0.0, overlap_s=0.8),
    Line("Alice", "Great. I will talk to the marketing team about the announcement.", pause_before_s=1.0),
)
TALK_TOLERANCE = 0.03
OVERLAP_TOLERANCE_S = 0.3
SCHEMATHESIS_TIMEOUT_S = 110


@pytest.fixture(scope="module")
def overlapping_meeting() -> Meeting:
    try:
        return build_meeting(OVERLAPPING_SCRIPT)
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required for the end-to-end tests: {exc}")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def streamed(sqlite_stack: RunningStack, overlapping_meeting: Meeting) -> list[StreamResult]:
    """The meeting streamed in real time, one connection per speaker (asking for live analytics), and stored.
    (Sent as fast as possible, one connection's flood of frames can delay the gateway's first look at the
    other's, which places the streams apart on the conversation timeline by that delay.)"""
    results = await sqlite_stack.stream_meeting(overlapping_meeting, config={"analytics": True}, stop_timeout_s=180)
    (cid,) = {r.conversation_id for r in results}
    # At least one message per scripted utterance (a sentence break may split one), then no more arriving.
    stored = await sqlite_stack.stored_messages(str(cid), len(overlapping_meeting.utterances), timeout_s=120)
    assert len(stored) >= len(overlapping_meeting.utterances), [m["text"] for m in stored]
    while True:
        await asyncio.sleep(2)
        again = await sqlite_stack.stored_messages(str(cid), len(stored))
        if len(again) == len(stored):
            break
        stored = again
    return results


@pytest.fixture(scope="module")
def conversation_id(streamed: list[StreamResult]) -> str:
    return str(streamed[0].conversation_id)


def _truth(meeting: Meeting, placement_s: dict[str, float] | None = None) -> tuple[dict[str, float], float]:
    """Scripted talk time per speaker, and the overlap with each speaker's track placed at ``placement_s``."""
    placement_s = placement_s or {}
    spans = {name: merge((u.start_s + placement_s.get(name, 0.0), u.end_s + placement_s.get(name, 0.0))
                         for u in meeting.utterances if u.speaker == name)
             for name in meeting.speakers}
    talk = {name: measure(s) for name, s in spans.items()}
    alice, bob = spans.values()
    return talk, measure(intersect(alice, bob))


async def _stream_placement(running: RunningStack, conversation_id: str) -> dict[str, float]:
    """Where the pipeline put each speaker's stream on the conversation timeline (seconds), from the stored rows:
    a message's time offset minus its position in its stream."""
    engine = create_engine(running.stack.settings)
    try:
        async with session_factory(engine)() as session:
            rows = await session.execute(
                select(Member.name, Message.time_offset_s, Message.start_sample)
                .join(Member, (Member.id == Message.member_id) & (Member.conversation_id == Message.conversation_id))
                .where(Message.conversation_id == conversation_id)
            )
            return {name: offset - start / 16_000 for name, offset, start in rows}
    finally:
        await engine.dispose()


async def test_talk_time_and_overlap_match_the_script(sqlite_stack: RunningStack, overlapping_meeting: Meeting,
                                                      streamed: list[StreamResult], conversation_id: str) -> None:
    assert _truth(overlapping_meeting)[1] == pytest.approx(2.0, abs=0.01)  # the script's overlaps, 1.2 s and 0.8 s
    # Each connection's audio is placed on the conversation timeline by when its first frame reached the gateway;
    # the clients start both at once, but a busy machine delays one more than the other. Analytics is judged on
    # the timeline the pipeline built; the skew is reported.
    placement = await _stream_placement(sqlite_stack, conversation_id)
    talk_truth, overlap_truth = _truth(overlapping_meeting, placement)
    async with sqlite_stack.api() as client:
        final = (await client.get(f"/v1/conversations/{conversation_id}/analytics")).json()
        messages = (await client.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
    talk = {m["name"]: m["talkTime"]["seconds"] for m in final["members"]}
    overlap = next(m["seconds"] for m in final["metrics"] if m["type"] == "total_overlap")
    skew = abs(placement["Alice"] - placement["Bob"])
    report = (f"truth talk {talk_truth} overlap {overlap_truth:.2f} (streams placed {skew:.3f} s apart); "
              f"measured talk {talk} overlap {overlap}")
    for name, seconds in talk_truth.items():
        assert talk[name] == pytest.approx(seconds, rel=TALK_TOLERANCE), report
    assert overlap == pytest.approx(overlap_truth, abs=OVERLAP_TOLERANCE_S), report
    by_name = {m["name"]: m for m in final["members"]}
    assert by_name["Bob"]["overlap"]["overlappingMembers"][0]["interruptions"] == 2  # Bob talked over Alice twice
    assert by_name["Alice"]["turns"] == 3 and by_name["Bob"]["turns"] == 2

    # Each client asked for live analytics (config.analytics): it was sent the whole conversation's figures as
    # they grew, the last within a final of the end (the analytics of the last final may come after the client
    # was told the conversation completed).
    for result in streamed:
        pushed = [r.body for r in result.of_type("analytics_response")]
        assert pushed, "no live analytics_response"
        assert [body["sequenceNumber"] for body in pushed] == list(range(len(pushed)))
        last = {m["name"]: m["talkTime"]["seconds"] for m in pushed[-1]["analytics"]["members"]}
        assert set(last) == {"Alice", "Bob"}, last
        assert all(last[name] <= talk[name] + 0.002 for name in last), (last, talk)
        assert sum(last.values()) >= 0.6 * sum(talk.values()), (last, talk)

    live = await latest_analytics(sqlite_stack.stack.settings, conversation_id, len(messages))
    assert live["message_count"] == len(messages), live
    live_talk = {m["speaker"]["name"]: m["talk_ms"] / 1000 for m in live["members"]}
    assert live_talk == pytest.approx(talk, abs=0.002)  # the same words, so the same figures
    assert live["overlap_ms"] / 1000 == pytest.approx(overlap, abs=0.002)


# --- OpenAPI: real responses against the document ----------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def openapi(sqlite_stack: RunningStack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sqlite_stack.base_url) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """Validate a response's status, content type and body against the operation's documented response."""
    operation = document["paths"][path][method]
    assert str(response.status_code) in operation["responses"], (path, method, response.status_code, response.text)
    content = operation["responses"][str(response.status_code)]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in content, (path, method, media_type)
    if media_type != "application/json":
        return
    pointer = "/".join(["#/paths", path.replace("~", "~0").replace("/", "~1"), method, "responses",
                        str(response.status_code), "content", "application~1json", "schema"])
    validator = jsonschema.Draft202012Validator({**document, "$ref": pointer})
    errors = sorted(validator.iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, f"{method.upper()} {path}: {errors[0].message} at {list(errors[0].path)}"


async def test_real_responses_match_the_openapi_document(sqlite_stack: RunningStack, conversation_id: str,
                                                         openapi: dict[str, Any]) -> None:
    conversation = "/v1/conversations/{conversation_id}"
    checked: list[tuple[str, str]] = []
    # A first call may load a language model in the gateway (topics, sentiment): allow it time.
    async with httpx.AsyncClient(base_url=sqlite_stack.base_url, headers={"x-api-key": sqlite_stack.token},
                                 timeout=90) as client:

        async def call(method: str, template: str, **kwargs: Any) -> httpx.Response:
            url = template.replace("{conversation_id}", conversation_id)
            for name, value in kwargs.pop("path", {}).items():
                url = url.replace("{" + name + "}", value)
            response = await client.request(method, url, **kwargs)
            _check(openapi, template, method.lower(), response)
            checked.append((template, method.lower()))
            return response

        await call("GET", "/v1/conversations", params={"limit": 5})
        await call("GET", conversation)
        await call("GET", f"{conversation}/messages", params={"verbose": "true", "sentiment": "true"})
        members = (await call("GET", f"{conversation}/members")).json()["members"]
        for path in ("analytics", "summary", "questions", "action-items", "follow-ups", "insights", "entities",
                     "trackers-detected", "trackers"):
            assert (await call("GET", f"{conversation}/{path}")).status_code == 200, path
        await call("GET", f"{conversation}/topics", params={"sentiment": "true"})
        await call("GET", f"{conversation}/topics", params={"parentRefs": "true"})
        for content_type in ("text/markdown", "text/srt"):
            await call("POST", f"{conversation}/transcript", json={"contentType": content_type})
        await call("PUT", conversation, json={"metadata": {"team": "launch"}})
        await call("PUT", f"{conversation}/members/{{member_id}}", path={"member_id": members[0]["id"]},
                   json={"name": members[0]["name"]})
        assert (await call("GET", f"{conversation}/analytics")).status_code == 200
        tracker = (await call("POST", "/v1/manage/trackers", json={"name": f"t-{uuid.uuid4().hex[:6]}",
                                                                     "vocabulary": ["launch plan"]})).json()
        tracker_id = tracker["tracker"]["id"]
        await call("GET", "/v1/manage/trackers")
        await call("GET", "/v1/manage/trackers/{tracker_id}", path={"tracker_id": tracker_id})
        await call("DELETE", "/v1/manage/trackers/{tracker_id}", path={"tracker_id": tracker_id})
        await call("GET", "/v1/job/{job_id}", path={"job_id": str(uuid.uuid4())})
        # Errors are documented too.
        missing = await client.get("/v1/conversations/404404")
        _check(openapi, conversation, "get", missing)
        assert missing.status_code == 404
        assert (await call("POST", f"{conversation}/transcript", json={"contentType": "x"})).status_code == 400
        assert (await call("GET", "/v1/conversations", params={"startTime": "soon"})).status_code == 400
        response = await client.get(f"/v1/conversations/{conversation_id}", headers={"x-api-key": "bad"})
        _check(openapi, conversation, "get", response)
        assert response.status_code == 401
    async with httpx.AsyncClient(base_url=sqlite_stack.base_url) as client:
        for path in ("/healthz", "/metrics", "/openapi.json"):
            response = await client.get(path)
            _check(openapi, path, "get", response)
    assert len(set(checked)) >= 20


async def test_schemathesis_finds_no_server_error(sqlite_stack: RunningStack, conversation_id: str,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """A few generated requests per operation, as an app of its own (the trackers it creates apply to its own
    conversations only). Left out: the Async API (it fetches the URLs and calls the webhooks it is given) and the
    Telephony connect call (it dials the SIP URI it is given)."""
    engine = create_engine(sqlite_stack.stack.settings)
    try:
        credentials = await create_app(session_factory(engine), f"schemathesis-{uuid.uuid4().hex[:6]}")
    finally:
        await engine.dispose()
    token = await fetch_token(sqlite_stack.base_url, credentials.app_id, credentials.app_secret)
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{sqlite_stack.base_url}/openapi.json",
        "--header", f"x-api-key: {token}",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples", "3", "--seed", "1", "--workers", "1", "--phases", "examples,fuzzing",
        "--exclude-path-regex", "^/v1/(process/|endpoint:connect)", "--request-timeout", "15", "--no-shrink",
        "--report-dir", str(tmp_path_factory.mktemp("schemathesis")),
    ]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                   timeout=SCHEMATHESIS_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
