"""SDP offer/answer, inbound access control, Telephony API requests and call statuses, alone."""

from __future__ import annotations

import pytest
from aiosipua import build_credentials, parse_auth, serialize_sdp, stringify_auth

from producers.sip.access import DigestVerifier, SourceFilter, parse_digest_accounts
from producers.sip.codecs import G722, PCMA, PCMU
from producers.sip.requests import (
    ConnectStart,
    ConnectStop,
    TelephonyRequestError,
    parse_connect_request,
    start_command,
)
from producers.sip.sdp import SdpError, build_answer, build_offer, parse_body, streams_from_answer, streams_from_offer
from producers.sip.status import CallStatus, EndedBy, call_status_event, call_status_message, status_for_rejection
from schemas.topics import CONVERSATION_EVENTS, TELEPHONY_COMMANDS

SIPREC_OFFER = """v=0
o=pbx 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 30000 RTP/AVP 8 0 96
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=label:1
a=sendonly
m=video 30002 RTP/AVP 97
a=rtpmap:97 H264/90000
m=audio 30004 RTP/AVP 0
c=IN IP4 10.0.0.6
a=label:2
a=sendonly
"""


def test_offer_lists_our_codecs_receive_only() -> None:
    text = serialize_sdp(build_offer("192.0.2.1", 40000, (G722, PCMU, PCMA)))
    assert "m=audio 40000 RTP/AVP 9 0 8 101" in text
    assert "a=rtpmap:9 G722/8000" in text and "a=recvonly" in text and "c=IN IP4 192.0.2.1" in text


def test_two_party_offer_gives_one_stream_per_audio_line() -> None:
    streams = streams_from_offer(parse_body(SIPREC_OFFER), (PCMU, PCMA))
    assert [(s.index, s.remote, s.label) for s in streams] == [
        (0, ("10.0.0.5", 30000), "1"), (2, ("10.0.0.6", 30004), "2")]
    assert streams[0].codecs == {0: PCMU}  # our preference among what was offered
    assert streams[0].event_payload_types == frozenset({96})
    answer = serialize_sdp(build_answer(parse_body(SIPREC_OFFER), "192.0.2.1", {0: 40000, 2: 40002}, streams))
    lines = answer.splitlines()
    media = [line for line in lines if line.startswith("m=")]
    assert media == ["m=audio 40000 RTP/AVP 0 96", "m=video 0 RTP/AVP 97", "m=audio 40002 RTP/AVP 0"]
    assert "a=rtpmap:96 telephone-event/8000" in lines and lines.count("a=recvonly") == 2


def test_wideband_is_preferred_when_offered() -> None:
    offer = SIPREC_OFFER.replace("m=audio 30000 RTP/AVP 8 0 96", "m=audio 30000 RTP/AVP 8 0 9 96")
    assert streams_from_offer(parse_body(offer), (G722, PCMU, PCMA))[0].preferred == G722


def test_an_answer_may_keep_several_payload_types() -> None:
    answer = parse_body(SIPREC_OFFER.split("m=video")[0])
    assert list(streams_from_answer(answer, (PCMU, PCMA))[0].codecs) == [8, 0]


@pytest.mark.parametrize("body", [
    "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n",  # nothing in common
    "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",  # no address
    "v=0\r\nm=audio many RTP/AVP 0\r\n",  # unparseable
    "hello",
])
def test_unusable_sdp_is_refused(body: str) -> None:
    with pytest.raises(SdpError):
        streams_from_offer(parse_body(body), (PCMU, PCMA))


def test_digest_credentials_computed_by_a_client_verify() -> None:
    accounts = parse_digest_accounts("pbx:se:cr:et:app-1, other:pw:app-2")
    assert accounts["pbx"].password == "se:cr:et" and accounts["pbx"].app_id == "app-1"
    verifier = DigestVerifier(accounts)
    challenge = parse_auth(verifier.challenge(now_s=1000.0))
    uri = "sip:convoscope@192.0.2.1"
    good = stringify_auth(build_credentials(_auth("pbx", "se:cr:et"), challenge, "INVITE", uri))  # type: ignore[arg-type]
    assert verifier.verify("INVITE", good, now_s=1010.0) == accounts["pbx"]
    wrong = stringify_auth(build_credentials(_auth("pbx", "guess"), challenge, "INVITE", uri))  # type: ignore[arg-type]
    assert verifier.verify("INVITE", wrong, now_s=1010.0) is None
    assert verifier.verify("INVITE", good, now_s=1000.0 + 301) is None  # nonce expired
    assert DigestVerifier(accounts).verify("INVITE", good, now_s=1010.0) is None  # another process's nonce
    assert verifier.verify("INVITE", None) is None and verifier.verify("INVITE", "Basic abc") is None


def _auth(username: str, password: str) -> object:
    from aiosipua import SipDigestAuth

    return SipDigestAuth(username, password)


def test_bad_digest_account_specs_fail_loudly() -> None:
    with pytest.raises(ValueError, match="user:password:appId"):
        parse_digest_accounts("pbx:nopassword")


def test_source_filter() -> None:
    allowed = SourceFilter("127.0.0.0/8, 10.1.0.0/16")
    assert allowed.allows("127.0.0.1") and allowed.allows("10.1.2.3")
    assert not allowed.allows("10.2.0.1") and not allowed.allows("not-an-ip")


def test_the_python_sdk_start_sip_body_parses() -> None:
    # What symbl.Telephony.start_sip sends: actions and data default to {}, sampleSize is a string.
    body = {"operation": "start", "endpoint": {"type": "sip", "uri": "sip:8021@pbx.example.com:5070",
                                                "audioConfig": {"sampleRate": 16000, "sampleSize": "16"}},
            "actions": {}, "data": {}}
    start = parse_connect_request(body)
    assert isinstance(start, ConnectStart) and start.uri == "sip:8021@pbx.example.com:5070"
    assert start.callee("123")["name"] == "8021"
    record = start_command(start, "123", "app", 1, 2)
    assert TELEPHONY_COMMANDS.serde.deserialize(TELEPHONY_COMMANDS.serde(record))["uri"] == start.uri


def test_documented_start_body_parses() -> None:
    start = parse_connect_request({
        "operation": "start",
        "endpoint": {"type": "sip", "uri": "sip:8021@sip.example.com", "providerName": "Symbl",
                     "audioConfig": {"sampleRate": 48000, "encoding": "OPUS", "sampleSize": 16}},
        "actions": [{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@b.c"]}}],
        "data": {"session": {"name": "My Meeting", "users": [{"user": {"name": "John", "userId": "j@x.y"}}]}},
        "languages": [{"code": "es-US"}], "timezone": "US/Pacific", "insightTypes": ["question", "action_item"],
        "trackers": [{"name": "Pricing", "vocabulary": ["price", "cost"]}],
    })
    assert isinstance(start, ConnectStart)
    assert (start.name, start.language, start.timezone) == ("My Meeting", "es-US", "US/Pacific")
    assert start.callee("1")["name"] == "John" and start.callee("1")["user_id"] == "j@x.y"
    assert start.trackers[0].vocabulary == ("price", "cost")


@pytest.mark.parametrize(("body", "message"), [
    ([], "JSON object"),
    ({"operation": "dial"}, "operation"),
    ({"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "1408"}}, "SIP trunk"),
    ({"operation": "start", "endpoint": {"type": "sip"}}, "uri is required"),
    ({"operation": "start", "endpoint": {"type": "sip", "uri": "sips:a@b"}}, "TLS"),
    ({"operation": "start", "endpoint": {"type": "sip", "uri": "tel:+14085551234"}}, "not a SIP URI"),
    ({"operation": "start", "endpoint": {"type": "sip", "uri": "sip:a@b"}, "actions": [{"name": "x"}]}, "invokeOn"),
    ({"operation": "start", "endpoint": {"type": "sip", "uri": "sip:a@b"}, "insightTypes": ["gossip"]},
     "insightTypes"),
    ({"operation": "stop"}, "connectionId"),
])
def test_bad_requests_say_what_to_fix(body: object, message: str) -> None:
    with pytest.raises(TelephonyRequestError, match=message):
        parse_connect_request(body)


def test_stop_request() -> None:
    assert parse_connect_request({"operation": "stop", "connectionId": "abc-1"}) == ConnectStop("abc-1")


@pytest.mark.parametrize(("code", "status"), [
    (486, CallStatus.BUSY), (600, CallStatus.BUSY), (408, CallStatus.NO_ANSWER), (487, CallStatus.NO_ANSWER),
    (404, CallStatus.FAILED), (503, CallStatus.FAILED),
])
def test_rejections_map_to_statuses(code: int, status: CallStatus) -> None:
    assert status_for_rejection(code) == status


def test_call_status_event_fits_the_schema_and_renders_for_subscribers() -> None:
    event = call_status_event("42", "app", "conn", CallStatus.ENDED, 5, direction="outbound",
                              ended_by=EndedBy.RTP_TIMEOUT)
    decoded = CONVERSATION_EVENTS.serde.deserialize(CONVERSATION_EVENTS.serde(event))
    assert decoded["type"] == "CALL_STATUS"
    assert call_status_message(decoded) == {
        "type": "call_status", "status": "ended", "connectionId": "conn", "conversationId": "42",
        "direction": "outbound", "final": True, "endedBy": "rtp_timeout"}
    busy = call_status_message(call_status_event("42", "app", "conn", CallStatus.BUSY, 5, direction="outbound",
                                                 sip_code=486, sip_reason="Busy Here"))
    assert (busy["sipCode"], busy["reason"], busy["final"]) == (486, "Busy Here", True)
