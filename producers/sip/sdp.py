"""SDP offers and answers for calls that only receive audio (RFC 3264), on aiosipua's SDP model. Pure.

We offer (and, answering, pick) G.722 first where available, then PCMU and PCMA, plus telephone-event so DTMF
does not arrive as in-band tones. Our side is ``recvonly``: convoscope listens and never speaks. A peer that forks
a call SIPREC-style offers one audio m-line per party; each accepted m-line becomes its own RTP port and its own
member in the conversation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiosipua import Codec as SdpCodec
from aiosipua import ConnectionData, MediaDescription, Origin, SdpMessage, TimingField, parse_sdp

from producers.sip.codecs import DTMF_PAYLOAD_TYPE, Codec, supported_codecs

__all__ = [
    "AudioStream",
    "SdpError",
    "build_answer",
    "build_offer",
    "parse_body",
    "streams_from_answer",
    "streams_from_offer",
]

PTIME_MS = 20
RECEIVING_DIRECTIONS = ("sendrecv", "sendonly")


class SdpError(ValueError):
    """The SDP cannot be used: unparseable, no audio, or no codec in common (SIP 488)."""


@dataclass(frozen=True)
class AudioStream:
    """One negotiated audio m-line: where the peer's RTP comes from and what its payload types mean."""

    index: int  # m-line position in the SDP
    remote: tuple[str, int]
    codecs: dict[int, Codec]  # payload type -> codec we decode
    event_payload_types: frozenset[int]
    label: str | None = None  # a=label (SIPREC names each party's stream)
    direction: str = "sendrecv"  # the peer's

    @property
    def preferred(self) -> Codec:
        return next(iter(self.codecs.values()))

    @property
    def peer_sends(self) -> bool:
        return self.direction in RECEIVING_DIRECTIONS


def parse_body(text: str) -> SdpMessage:
    try:
        sdp = parse_sdp(text)
    except (ValueError, IndexError) as exc:
        raise SdpError(f"unparseable SDP: {exc}") from exc
    if not sdp.media:
        raise SdpError("SDP without media")
    return sdp


def _matches(ours: Codec, offered: SdpCodec) -> bool:
    return offered.encoding_name.upper() == ours.name and offered.clock_rate == ours.rtp_clock_hz


def _stream(index: int, media: MediaDescription, sdp: SdpMessage, ours: Sequence[Codec],
            *, keep_offer_order: bool) -> AudioStream | None:
    if media.media != "audio" or media.port == 0:
        return None
    connection = media.connection or sdp.connection
    if connection is None:
        raise SdpError(f"audio m-line {index} has no connection address (c=)")
    chosen: dict[int, Codec] = {}
    candidates = [(codec, offered) for codec in ours for offered in media.codecs if _matches(codec, offered)]
    if keep_offer_order:
        # In an answer every listed payload type may be sent; keep them all, in the peer's order.
        candidates.sort(key=lambda pair: media.codecs.index(pair[1]))
        for codec, offered in candidates:
            chosen.setdefault(offered.payload_type, codec)
    elif candidates:
        codec, offered = candidates[0]  # our preference among what the peer offers
        chosen[offered.payload_type] = codec
    if not chosen:
        names = ", ".join(c.encoding_name or str(c.payload_type) for c in media.codecs) or "none"
        raise SdpError(f"no common audio codec on m-line {index} (offered: {names})")
    events = frozenset(c.payload_type for c in media.codecs if c.encoding_name.lower() == "telephone-event")
    labels = media.attributes.get("label") or [None]
    return AudioStream(index, (connection.address, media.port), chosen, events, labels[0], media.direction)


def streams_from_offer(offer: SdpMessage, codecs: Sequence[Codec] | None = None) -> list[AudioStream]:
    """The audio m-lines of an incoming INVITE we can take, each with the codec we will ask for."""
    ours = tuple(codecs or supported_codecs())
    streams = [s for i, m in enumerate(offer.media) if (s := _stream(i, m, offer, ours, keep_offer_order=False))]
    if not streams:
        raise SdpError("no audio stream offered")
    return streams


def streams_from_answer(answer: SdpMessage, codecs: Sequence[Codec] | None = None) -> list[AudioStream]:
    """The audio m-lines the callee accepted in its 200 OK."""
    ours = tuple(codecs or supported_codecs())
    streams = [s for i, m in enumerate(answer.media) if (s := _stream(i, m, answer, ours, keep_offer_order=True))]
    if not streams:
        raise SdpError("the answer accepts no audio stream")
    return streams


def _envelope(address: str, media: list[MediaDescription]) -> SdpMessage:
    session = str(int(time.time()))
    kind = "IP6" if ":" in address else "IP4"
    return SdpMessage(
        origin=Origin(username="convoscope", session_id=session, session_version=session, addr_type=kind,
                      address=address),
        session_name="convoscope",
        connection=ConnectionData(addr_type=kind, address=address),
        timing=TimingField(0, 0),
        media=media,
    )


def _audio_media(port: int, codecs: Sequence[Codec], direction: str, *, label: str | None = None
                 ) -> MediaDescription:
    formats = [str(c.payload_type) for c in codecs] + [str(DTMF_PAYLOAD_TYPE)]
    attributes: dict[str, list[str]] = {
        "rtpmap": [c.rtpmap for c in codecs] + [f"{DTMF_PAYLOAD_TYPE} telephone-event/8000"],
        "fmtp": [f"{DTMF_PAYLOAD_TYPE} 0-16"],
        "ptime": [str(PTIME_MS)],
        direction: [],
    }
    if label is not None:
        attributes["label"] = [label]
    media = MediaDescription(media="audio", port=port, proto="RTP/AVP", formats=formats, attributes=attributes)
    media.codecs = [SdpCodec(c.payload_type, c.name, c.rtp_clock_hz, 1) for c in codecs]
    return media


def build_offer(address: str, rtp_port: int, codecs: Sequence[Codec] | None = None) -> SdpMessage:
    """The INVITE body of a dial-out: one receive-only audio stream."""
    return _envelope(address, [_audio_media(rtp_port, tuple(codecs or supported_codecs()), "recvonly")])


def build_answer(offer: SdpMessage, address: str, ports: dict[int, int], streams: Sequence[AudioStream]
                 ) -> SdpMessage:
    """The 200 OK body: every offered m-line in order, ours on ``ports[index]``, the rest rejected (port 0)."""
    by_index = {s.index: s for s in streams}
    media: list[MediaDescription] = []
    for index, offered in enumerate(offer.media):
        stream = by_index.get(index)
        if stream is None or index not in ports:
            media.append(MediaDescription(media=offered.media, port=0, proto=offered.proto,
                                          formats=list(offered.formats)))
            continue
        codec_pt, codec = next(iter(stream.codecs.items()))
        answered = _audio_media(ports[index], [codec], "recvonly" if stream.peer_sends else "inactive",
                                label=stream.label)
        # Answer with the peer's payload type numbers (dynamic ones may differ from ours).
        answered.formats = [str(codec_pt)] + [str(pt) for pt in sorted(stream.event_payload_types)]
        answered.attributes["rtpmap"] = [f"{codec_pt} {codec.name}/{codec.rtp_clock_hz}"] + [
            f"{pt} telephone-event/8000" for pt in sorted(stream.event_payload_types)
        ]
        answered.attributes["fmtp"] = [f"{pt} 0-16" for pt in sorted(stream.event_payload_types)]
        if not answered.attributes["fmtp"]:
            del answered.attributes["fmtp"]
        media.append(answered)
    return _envelope(address, media)
