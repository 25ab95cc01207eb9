"""The conversation page's HTML, rendered from a report without a server: what a reader sees, and that what people
said can never become markup."""

from __future__ import annotations

from html.parser import HTMLParser

from convoscope.api.page import render_conversation_page
from convoscope.api.report import (
    ConversationReport,
    ReportInsight,
    ReportLine,
    ReportParticipant,
    ReportTracker,
    SpeakerTime,
)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _report(*, ended: bool, text: str = "We will ship on Friday.") -> ConversationReport:
    return ConversationReport(
        conversation_id="6123456789012345678", app_id="app", title="Renewal call",
        start_ms=1_780_000_000_000, end_ms=1_780_000_095_000 if ended else None,
        participants=(ReportParticipant("Maria Lopez", "maria@example.com"), ReportParticipant("Sam")),
        transcript=(ReportLine("m1", "Maria Lopez", 0.5, "Can we get a discount?"),
                    ReportLine("m2", "Sam", 64.0, text)),
        insights=(ReportInsight("question", "Can we get a discount?", "Maria Lopez", "m1"),
                  ReportInsight("action_item", text, "Sam", "m2", assignee="Sam", due_by="2026-06-05T23:59:59Z")),
        topics=("discount", "shipping"),
        trackers=(ReportTracker("Pricing", (("discount", 2),)),),
        talk_time=(SpeakerTime("Maria Lopez", 30.0, 60.0, 140), SpeakerTime("Sam", 20.0, 40.0, 120)),
        summary=("Maria asked for a discount.",) if ended else (),
    )


def test_finished_conversation_shows_what_was_said_and_what_came_of_it() -> None:
    html = render_conversation_page(_report(ended=True), live_url="/live", nonce="n0nce")
    for expected in ("Renewal call", "Ended", "Maria Lopez, Sam", "2 min", "Maria asked for a discount.",
                     "01:04", "Owner: Sam", "due Fri 05 Jun 2026", "Pricing", "discount \u00d72", "shipping",
                     "Maria Lopez · 60% · 00:30"):
        assert expected in html, expected
    parser = _Elements()
    parser.feed(html)
    # A finished conversation has no live feed; every style block carries the response's CSP nonce.
    assert not any(tag == "script" for tag, _ in parser.tags)
    assert all(attrs.get("nonce") == "n0nce" for tag, attrs in parser.tags if tag == "style")
    bars = [attrs for tag, attrs in parser.tags if tag == "rect" and attrs.get("class") == "bar"]
    assert [bar["width"] for bar in bars] == ["240.0", "160.0"]


def test_conversation_in_progress_carries_its_live_feed() -> None:
    html = render_conversation_page(_report(ended=False), live_url="/live/conversations/1?token=t&x=1",
                                    nonce="n")
    parser = _Elements()
    parser.feed(html)
    assert ("script", {"src": "/static/conversation-live.js"}) in parser.tags
    live = next(attrs for tag, attrs in parser.tags if attrs.get("id") == "live")
    assert live["data-live-url"] == "/live/conversations/1?token=t&x=1"
    assert "Live" in html and "running for" in html


def test_what_people_said_is_shown_as_text_never_as_markup() -> None:
    html = render_conversation_page(_report(ended=True, text=HOSTILE), live_url="/live", nonce="n")
    parser = _Elements()
    parser.feed(html)
    assert not any(tag in ("script", "img") for tag, _ in parser.tags)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
