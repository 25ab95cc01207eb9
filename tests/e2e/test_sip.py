"""Telephony end to end: SIPp as the real other party, the whole stack (SIP gateway included) in between.

Speech is espeak-ng synthesized, sent as 8 kHz G.711 (or 16 kHz G.722) RTP. Whisper tiny.en loses accuracy at
telephone bandwidth (platform notes §2: 20-28 % WER on synthetic 8 kHz speech; offline, this sentence through our
G.711 path decodes word-perfect for four espeak voices), so transcripts must be within MAX_WER = 0.3; a decoding,
resampling or timing fault garbles nearly every word.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
import websockets

from convoscope.embedded_broker import free_port
from convoscope.evaluation import word_error_rate
from convoscope.synth import SynthesisUnavailable, speak
from producers.sip.codecs import G722, g722_available
from tests.e2e.conftest import RunningStack
from tests.e2e.sip_peer import SippPeer, start_sipp, write_g711_wav, write_rtp_pcap
from tests.sip.packets import packetize, rtp

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

MAX_WER = 0.3
VOICE = "en-us+m3"
FIRST = "The payment system still needs more testing before the launch."
SECOND = "Please tell the marketing team about the new pricing page."
LEAD_IN_S, TAIL_S = 0.3, 0.8
RATE = 16_000


@dataclass(frozen=True)
class Recording:
    wav: str  # file name in the work directory, for rtp_stream
    duration_s: float
    first_end_s: float  # when FIRST has been said


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sip")


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


@pytest.fixture(scope="module")
def speech(workdir: Path) -> dict[str, Recording]:
    try:
        first, second = speak(FIRST, VOICE), speak(SECOND, VOICE)
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required: {exc}")
    one = np.concatenate([_silence(LEAD_IN_S), first, _silence(TAIL_S)])
    two = np.concatenate([one, second, _silence(TAIL_S)])
    write_g711_wav(workdir / "one.wav", one)
    write_g711_wav(workdir / "two.wav", two)
    first_end = LEAD_IN_S + len(first) / RATE
    return {"one": Recording("one.wav", len(one) / RATE, first_end),
            "two": Recording("two.wav", len(two) / RATE, first_end)}


@pytest_asyncio.fixture(loop_scope="session")
async def peers() -> AsyncIterator[list[SippPeer]]:
    started: list[SippPeer] = []
    yield started
    for peer in started:
        peer.kill()


async def _connect(stack: RunningStack, uri: str, **extra: Any) -> dict[str, Any]:
    # start answers once a SIP gateway took the call; a loaded machine can make that slow.
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": stack.token}, timeout=60) as client:
        response = await client.post("/v1/endpoint:connect", json={
            "operation": "start", "endpoint": {"type": "sip", "uri": uri, "audioConfig": {"sampleRate": 8000}},
            "data": {"session": {"name": "Support call"}}, **extra,
        })
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resultWebSocketUrl"].endswith(f"/events/{body['connectionId']}")
    return body  # type: ignore[no-any-return]


async def _conversation(stack: RunningStack, conversation_id: str, final: bool = True,
                        timeout_s: float = 30.0) -> dict[str, Any]:
    """The conversation once its call reached a final status (and it ended, when ``final``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    body: dict[str, Any] = {}
    async with stack.api() as client:
        while loop.time() < deadline:
            response = await client.get(f"/v1/conversations/{conversation_id}")
            if response.status_code == 200:
                body = response.json()
                status = body["metadata"].get("telephony", {}).get("status")
                if status in ("busy", "no_answer", "failed", "canceled", "ended") and (body["endTime"] or not final):
                    return body
            await asyncio.sleep(0.3)
    raise AssertionError(f"conversation {conversation_id} did not reach a final call status: {body}")


async def _heard(stack: RunningStack, conversation_id: str, said: dict[str | None, str],
                 timeout_s: float = 90.0) -> list[dict[str, Any]]:
    """The stored messages once each speaker's text (None: everyone's) is within MAX_WER of what they said, or
    what is stored at the timeout. Generous: on a loaded machine a call's last final may come a minute later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    messages: list[dict[str, Any]] = []
    while loop.time() < deadline:
        messages = await stack.stored_messages(conversation_id, 1, timeout_s=5, verbose=True)
        if all(word_error_rate([text], [_text(_by(messages, who))]) <= MAX_WER for who, text in said.items()):
            break
        await asyncio.sleep(1.0)
    return messages


def _by(messages: list[dict[str, Any]], who: str | None) -> list[dict[str, Any]]:
    return [m for m in messages if who is None or m["from"].get("name") == who]


def _text(messages: list[dict[str, Any]]) -> str:
    return " ".join(m["text"] for m in messages)


async def test_dial_out_transcribes_the_callee_and_ends_on_bye(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["one"]
    # Rings for 2 s (the answer timeout is 3 s), so the subscriber below is listening before the answer.
    callee = await start_sipp(workdir, "callee", ring_ms=2000, codec="PCMU", payload_type=0,
                              play=f'rtp_stream="{recording.wav},1,0"', talk_ms=round(recording.duration_s * 1000))
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:alice@{callee.uri_host}")
    heard: list[dict[str, Any]] = []
    subscribed = asyncio.Event()

    async def listen() -> None:
        url = sqlite_stack.ws_url(started["connectionId"], path="/session/subscribe/")
        # No client pings: a busy server answering them late must not cost the subscription.
        async with websockets.connect(url, additional_headers={"x-api-key": sqlite_stack.token},
                                      ping_interval=None) as ws:
            async for frame in ws:
                heard.append(json.loads(frame))
                subscribed.set()

    listener = asyncio.create_task(listen())
    await asyncio.wait_for(subscribed.wait(), 10)
    assert heard[0]["message"]["type"] == "subscription_started"
    assert await callee.finished() == 0, callee.log()
    conversation = await _conversation(sqlite_stack, started["conversationId"])
    telephony = conversation["metadata"]["telephony"]
    assert (telephony["status"], telephony["endedBy"]) == ("ended", "remote")
    messages = await _heard(sqlite_stack, started["conversationId"], {None: FIRST})
    assert word_error_rate([FIRST], [_text(messages)]) <= MAX_WER, _text(messages)
    assert [m["name"] for m in conversation["members"]] == ["alice"]
    # Positions come from RTP timestamps: the message spans the sentence as spoken (VAD pads it a little).
    spoken_s = recording.first_end_s - LEAD_IN_S
    assert spoken_s - 0.3 < messages[0]["duration"] < spoken_s + 0.8, messages[0]
    await asyncio.wait_for(listener, 90)  # the server closes the socket after the call's results
    kinds = [b.get("type") for b in heard]
    statuses = [b["status"] for b in heard if b.get("type") == "call_status"]
    assert "answered" in statuses and statuses[-1] == "ended"
    assert "transcript_response" in kinds and "message_response" in kinds
    assert heard[-1]["message"]["type"] == "conversation_completed"
    streamed = " ".join(m["payload"]["content"] for b in heard if b.get("type") == "message_response"
                        for m in b["messages"])
    assert streamed == _text(messages)


async def test_hang_up_mid_utterance_keeps_what_was_said(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["two"]
    second_len_s = recording.duration_s - TAIL_S - (recording.first_end_s + TAIL_S)
    cut_s = recording.first_end_s + TAIL_S + 0.6 * second_len_s  # 60 % into the second sentence
    callee = await start_sipp(workdir, "callee", ring_ms=100, codec="PCMU", payload_type=0,
                              play=f'rtp_stream="{recording.wav},1,0"', talk_ms=round(cut_s * 1000))
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:bob@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()
    await _conversation(sqlite_stack, started["conversationId"])
    spoken = FIRST + " " + " ".join(SECOND.split()[:6])  # what was said before the BYE
    messages = await _heard(sqlite_stack, started["conversationId"], {None: spoken})
    first = [m for m in messages if m["timeOffset"] < recording.first_end_s]
    rest = [m for m in messages if m["timeOffset"] >= recording.first_end_s]
    assert word_error_rate([FIRST], [_text(first)]) <= MAX_WER, _text(messages)
    # The interrupted sentence was finalised from the audio received before the BYE.
    said = set(SECOND.lower().replace(".", "").split()[:6])
    assert rest and said & set(_text(rest).lower().replace(".", "").replace(",", "").split()), _text(messages)


@pytest.mark.skipif(not g722_available(), reason="the G722 package is not installed")
async def test_wideband_g722_with_reordered_and_lost_packets(
    sqlite_stack: RunningStack, workdir: Path, peers: list[SippPeer]
) -> None:
    from G722 import G722 as Engine

    audio = np.concatenate([_silence(LEAD_IN_S), speak(FIRST, VOICE), _silence(TAIL_S)])
    packets = packetize(bytes(Engine(16_000, 64_000).encode(audio)), 160, timestamp_step=160,
                        payload_type=G722.payload_type)
    for i in range(10, len(packets) - 1, 25):  # a neighbour overtaken on the way every half second
        packets[i], packets[i + 1] = packets[i + 1], packets[i]
    del packets[40], packets[90]  # two lost
    write_rtp_pcap(workdir / "g722.pcap", packets)
    callee = await start_sipp(workdir, "callee", ring_ms=100, codec="G722", payload_type=9,
                              play='play_pcap_audio="g722.pcap"', talk_ms=round(len(audio) / RATE * 1000) + 200)
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:carol@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()
    await _conversation(sqlite_stack, started["conversationId"])
    messages = await _heard(sqlite_stack, started["conversationId"], {None: FIRST})
    # 16 kHz audio: the same bar as the streaming API's 16 kHz tests.
    assert word_error_rate([FIRST], [_text(messages)]) <= 0.15, _text(messages)


async def test_busy_callee(sqlite_stack: RunningStack, workdir: Path, peers: list[SippPeer]) -> None:
    callee = await start_sipp(workdir, "callee_busy")
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:busy@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()  # it got our ACK for its 486
    telephony = (await _conversation(sqlite_stack, started["conversationId"]))["metadata"]["telephony"]
    assert (telephony["status"], telephony["sipCode"]) == ("busy", 486)


async def test_unanswered_call_is_cancelled(sqlite_stack: RunningStack, workdir: Path, peers: list[SippPeer]
                                            ) -> None:
    callee = await start_sipp(workdir, "callee_no_answer", wait_ms=15_000)
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:nobody@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()  # CANCEL, 487 and our ACK all happened
    telephony = (await _conversation(sqlite_stack, started["conversationId"]))["metadata"]["telephony"]
    assert telephony["status"] == "no_answer" and "no answer within" in telephony["reason"]


async def test_unusable_answer_fails_the_call(sqlite_stack: RunningStack, workdir: Path, peers: list[SippPeer]
                                              ) -> None:
    callee = await start_sipp(workdir, "callee_bad_sdp", wait_ms=10_000)
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:g729@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()  # ACKed, then our BYE
    telephony = (await _conversation(sqlite_stack, started["conversationId"]))["metadata"]["telephony"]
    assert (telephony["status"], telephony["sipCode"], telephony["endedBy"]) == ("failed", 488, "error")
    assert "no common audio codec" in telephony["reason"]


async def test_rtp_that_stops_without_bye_ends_the_call(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["one"]
    callee = await start_sipp(workdir, "callee_silent", audio=recording.wav, wait_ms=20_000)
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:mute@{callee.uri_host}")
    assert await callee.finished() == 0, callee.log()  # our BYE arrived after the RTP timeout
    telephony = (await _conversation(sqlite_stack, started["conversationId"]))["metadata"]["telephony"]
    assert (telephony["status"], telephony["endedBy"]) == ("ended", "rtp_timeout")
    messages = await _heard(sqlite_stack, started["conversationId"], {None: FIRST})
    assert word_error_rate([FIRST], [_text(messages)]) <= MAX_WER, _text(messages)


async def test_stop_through_the_api_hangs_up(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["one"]
    callee = await start_sipp(workdir, "callee_silent", audio=recording.wav, wait_ms=20_000)
    peers.append(callee)
    started = await _connect(sqlite_stack, f"sip:stop@{callee.uri_host}")
    await asyncio.sleep(1.0)
    async with sqlite_stack.api() as client:
        response = await client.post("/v1/endpoint:connect",
                                     json={"operation": "stop", "connectionId": started["connectionId"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversationId"] == started["conversationId"] and body["summaryInfo"]
    assert await callee.finished() == 0, callee.log()
    telephony = (await _conversation(sqlite_stack, started["conversationId"]))["metadata"]["telephony"]
    assert (telephony["status"], telephony["endedBy"]) == ("ended", "api")
    # summaryInfo links the call's conversation page, signed: it opens without any other credential.
    async with httpx.AsyncClient() as browser:
        page = await browser.get(body["summaryInfo"][0]["url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def test_inbound_call_becomes_a_conversation(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["one"]
    sip_port = sqlite_stack.stack.settings.sip_port
    caller_name = f"Tester {uuid.uuid4().hex[:6]}"
    caller = await start_sipp(workdir, "caller", remote=f"127.0.0.1:{sip_port}", audio=recording.wav,
                              caller_name=caller_name, caller_user="dana",
                              talk_ms=round(recording.duration_s * 1000))
    peers.append(caller)
    assert await caller.finished() == 0, caller.log()
    async with sqlite_stack.api() as client:
        listed = (await client.get("/v1/conversations", params={"order": "desc", "limit": 20})).json()
    ours = [c for c in listed["conversations"] if c["name"] == f"Call from {caller_name}"]
    assert ours, listed
    conversation = await _conversation(sqlite_stack, ours[0]["id"])
    telephony = conversation["metadata"]["telephony"]
    assert (telephony["status"], telephony["direction"], telephony["endedBy"]) == ("ended", "inbound", "remote")
    assert [m["name"] for m in conversation["members"]] == [caller_name]
    messages = await _heard(sqlite_stack, ours[0]["id"], {None: FIRST})
    assert word_error_rate([FIRST], [_text(messages)]) <= MAX_WER, _text(messages)


def _sip_exchange(port: int, request: bytes, timeout_s: float = 5.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.bind(("127.0.0.1", 0))
        sock.sendto(request, ("127.0.0.1", port))
        return sock.recvfrom(65535)[0]


def _request(method: str, port: int, *, headers: str = "") -> bytes:
    # rport (RFC 3581): answer to the port this came from.
    return (
        f"{method} sip:convoscope@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
        f"{headers}Content-Length: 0\r\n\r\n"
    ).encode()


async def test_malformed_sip_gets_errors_and_the_gateway_keeps_answering(sqlite_stack: RunningStack) -> None:
    port = sqlite_stack.stack.settings.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for garbage in (b"\x00\xff" * 40, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n"):
            sock.sendto(garbage, ("127.0.0.1", port))
    # An INVITE without From/To/Call-ID/CSeq: refused with 400, since its Via says where to answer.
    reply = await asyncio.to_thread(_sip_exchange, port, _request("INVITE", port))
    assert reply.startswith(b"SIP/2.0 400"), reply
    options = _request("OPTIONS", port, headers=(
        "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:convoscope@127.0.0.1>\r\n"
        f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"))
    assert (await asyncio.to_thread(_sip_exchange, port, options)).startswith(b"SIP/2.0 200")


async def test_telephony_api_refuses_what_it_cannot_do(sqlite_stack: RunningStack) -> None:
    async with sqlite_stack.api() as client:
        pstn = await client.post("/v1/endpoint:connect", json={
            "operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "14082924837"}})
        no_uri = await client.post("/v1/endpoint:connect", json={"operation": "start", "endpoint": {"type": "sip"}})
        unknown = await client.post("/v1/endpoint:connect", json={"operation": "stop", "connectionId": "nope"})
    async with sqlite_stack.api(token="not-a-token") as client:
        unauthorized = await client.post("/v1/endpoint:connect", json={"operation": "stop", "connectionId": "x"})
    assert pstn.status_code == 400 and "SIP trunk" in pstn.json()["message"]
    assert no_uri.status_code == 400 and "uri is required" in no_uri.json()["message"]
    assert unknown.status_code == 404
    assert unauthorized.status_code == 401


def _point_sdk_at(base_url: str) -> Any:
    symbl = pytest.importorskip("symbl")
    import symbl.AuthenticationToken as auth
    from symbl_rest import ConnectionToEndpointApi
    from symbl_rest.configuration import Configuration

    configuration = Configuration()
    configuration.host = base_url
    Configuration.set_default(configuration)
    auth.configuration = None  # forget any token from another test
    # The package's ``Connection`` attribute is the class; the module that reads the constant is in sys.modules.
    sys.modules["symbl.Connection"].SYMBL_WEBSOCKET_BASE_PATH = (
        base_url.replace("http", "ws", 1) + "/session/subscribe/")
    # symbl.Telephony built its REST client at import, with the default host: build it again.
    symbl.Telephony.telephony_api_rest = ConnectionToEndpointApi()
    return symbl


async def test_official_sdk_start_sip_and_subscribe(
    sqlite_stack: RunningStack, workdir: Path, speech: dict[str, Recording], peers: list[SippPeer]
) -> None:
    recording = speech["one"]
    callee = await start_sipp(workdir, "callee", ring_ms=1000, codec="PCMU", payload_type=0,
                              play=f'rtp_stream="{recording.wav},1,0"', talk_ms=round(recording.duration_s * 1000))
    peers.append(callee)
    symbl = _point_sdk_at(sqlite_stack.base_url)
    credentials = {"app_id": sqlite_stack.app_id, "app_secret": sqlite_stack.app_secret}
    messages: list[dict[str, Any]] = []
    transcripts: list[dict[str, Any]] = []

    def run_sdk() -> Any:
        connection = symbl.Telephony.start_sip(uri=f"sip:erin@{callee.uri_host}", credentials=credentials)
        # The Python SDK hands telephony callbacks the raw JSON text; subscribe() returns when we close.
        thread = threading.Thread(target=connection.subscribe, args=({
            "message_response": lambda text: messages.append(json.loads(text)),
            "transcript_response": lambda text: transcripts.append(json.loads(text)),
        },), daemon=True)
        thread.start()
        thread.join(120)
        return connection

    connection = await asyncio.to_thread(run_sdk)
    assert await callee.finished() == 0, callee.log()
    heard = " ".join(m["payload"]["content"] for body in messages for m in body["messages"])
    assert word_error_rate([FIRST], [heard]) <= MAX_WER, heard
    assert any(t["isFinal"] for t in transcripts)
    stopped = await asyncio.to_thread(symbl.Telephony.stop, connection.connectionId)
    assert stopped.conversation_id == connection.conversation.get_conversation_id()


TWO_PARTY_OFFER = """v=0
o=recorder 1 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio {first} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:1
a=sendonly
m=audio {second} RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=label:2
a=sendonly
"""


async def _send_rtp(target: tuple[str, int], local_port: int, payload: bytes, ssrc: int) -> None:
    loop = asyncio.get_running_loop()
    sender, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", local_port))
    try:
        begin = loop.time()
        for index, offset in enumerate(range(0, len(payload), 160)):
            await asyncio.sleep(max(0.0, begin + index * 0.02 - loop.time()))
            sender.sendto(rtp(index, index * 160, payload[offset : offset + 160], ssrc=ssrc), target)
    finally:
        sender.close()


async def test_two_party_recording_gives_each_party_a_member(sqlite_stack: RunningStack) -> None:
    """A recorder forking a call SIPREC-style: one audio line per party, each transcribed as its own member.
    (SIPp sends one RTP stream per call, so this peer is aiosipua driven from the test.)"""
    from aiosipua import SipUAC, SipUAS

    from producers.sip.gateway import _SipTransport
    from producers.sip.sdp import parse_body

    said = {"caller": FIRST, "callee": SECOND}
    # A conversation: the callee answers after the caller; each line carries its party's audio throughout.
    first, second = speak(FIRST, VOICE), speak(SECOND, VOICE)
    reply_at = len(_silence(LEAD_IN_S)) + len(first) + len(_silence(0.6))
    total = reply_at + len(second) + len(_silence(TAIL_S))
    tracks = {"caller": np.zeros(total, np.int16), "callee": np.zeros(total, np.int16)}
    tracks["caller"][len(_silence(LEAD_IN_S)) : len(_silence(LEAD_IN_S)) + len(first)] = first
    tracks["callee"][reply_at : reply_at + len(second)] = second
    payloads = {who: _g711_payload(track) for who, track in tracks.items()}
    transport = _SipTransport(local_addr=("127.0.0.1", 0))
    uac = SipUAC(transport)
    uas = SipUAS(transport, uac=uac)
    await uas.start()
    user = f"recorder-{uuid.uuid4().hex[:6]}"
    ports = [free_port(), free_port()]
    try:
        call = uac.send_invite(f"sip:{user}@127.0.0.1:{transport.local_addr[1]}",
                               f"sip:convoscope@127.0.0.1:{sqlite_stack.stack.settings.sip_port}",
                               ("127.0.0.1", sqlite_stack.stack.settings.sip_port),
                               sdp_offer=parse_body(TWO_PARTY_OFFER.format(first=ports[0], second=ports[1])))
        await call.wait_answered(10)
        assert call.sdp_answer is not None
        targets = [("127.0.0.1", m.port) for m in call.sdp_answer.media if m.media == "audio"]
        assert len(targets) == 2 and all(port for _, port in targets)
        await asyncio.gather(*[_send_rtp(target, port, payloads[who], 1 + i)
                               for i, (target, port, who) in enumerate(zip(targets, ports, said, strict=True))])
        await asyncio.sleep(0.3)
        call.hangup(uac)
    finally:
        await uas.stop()
    async with sqlite_stack.api() as client:
        listed = (await client.get("/v1/conversations", params={"order": "desc", "limit": 20})).json()
    ours = [c for c in listed["conversations"] if user in (c["name"] or "")]
    assert ours, listed
    conversation = await _conversation(sqlite_stack, ours[0]["id"])
    assert sorted(m["name"] for m in conversation["members"]) == ["callee", "caller"]
    messages = await _heard(sqlite_stack, ours[0]["id"], dict(said))
    for who, text in said.items():
        assert word_error_rate([text], [_text(_by(messages, who))]) <= MAX_WER, (who, _text(messages))
    # Both lines started together, so the conversation timeline puts the reply after the question.
    assert _by(messages, "callee")[0]["timeOffset"] > _by(messages, "caller")[0]["timeOffset"] + 2.0


def _g711_payload(samples_16k: np.ndarray) -> bytes:
    import subprocess

    return subprocess.run(
        ["sox", "-t", "raw", "-r", "16000", "-e", "signed", "-b", "16", "-c", "1", "-", "-t", "raw", "-r", "8000",
         "-e", "u-law", "-"], input=samples_16k.astype("<i2").tobytes(), capture_output=True, check=True).stdout
