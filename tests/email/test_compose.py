"""The summary email's composition alone: parts, content in both, escaping, no remote resources."""

from __future__ import annotations

import datetime as dt
import email
import re
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from sinks.email.compose import (
    ActionItemLine,
    Participant,
    SummaryEmailContent,
    compose_summary_email,
    format_due,
    format_duration,
    summary_message_id,
)
from sinks.email.exceptions import EmailConfigError
from sinks.email.smtp import SmtpTarget, backoff_delay_s

LINK = "http://convoscope.test/conversations/1234567890123456?token=abc.def.ghi"
HOSTILE = '<script>alert("x")</script><img src="http://evil.test/t.png">'


def _content(**overrides: object) -> SummaryEmailContent:
    values: dict[str, object] = {
        "conversation_id": "1234567890123456",
        "title": "Launch planning",
        "started_at": dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC),
        "duration_s": 754.0,
        "link": LINK,
        "participants": [Participant("Alice Jones", "alice@example.com"), Participant("Bob")],
        "summary": ["Alice and Bob agreed to ship the beta on Friday."],
        "action_items": [ActionItemLine("Bob will send the pricing deck", "Bob", "Fri 27 Nov 2026")],
        "follow_ups": [ActionItemLine("Check in with legal next week", None, None)],
        "questions": ["Can we move the launch to December?"],
        "topics": ["pricing deck", "beta launch"],
    }
    values.update(overrides)
    return SummaryEmailContent(**values)  # type: ignore[arg-type]


def _parse(message: EmailMessage) -> EmailMessage:
    """As a receiving client sees it: the bytes on the wire, parsed again."""
    return email.message_from_bytes(message.as_bytes(), policy=policy.default)  # type: ignore[return-value]


def _parts(message: EmailMessage) -> tuple[str, str]:
    parsed = _parse(message)
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def _compose(content: SummaryEmailContent) -> EmailMessage:
    return compose_summary_email(content, sender="convoscope <noreply@convoscope.test>",
                                 recipients=["ann@example.com", "ben@example.org"],
                                 message_id=summary_message_id(content.conversation_id, "convoscope.test"))


def test_both_parts_carry_the_whole_content() -> None:
    message = _compose(_content())
    parsed = _parse(message)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["Subject"] == "Summary: Launch planning"
    assert parsed["To"] == "ann@example.com, ben@example.org"
    assert parsed["Message-ID"] == "<summary.1234567890123456@convoscope.test>"
    for text in _parts(message):
        for expected in ("Launch planning", "Alice Jones", "alice@example.com", "Bob", "12 min 34 s",
                         "Tue 24 Nov 2026 09:30 UTC", "ship the beta on Friday", "Bob will send the pricing deck",
                         "Fri 27 Nov 2026", "Check in with legal", "Can we move the launch to December?",
                         "pricing deck", "beta launch"):
            assert expected in text, (expected, text[:300])
    plain, html = _parts(message)
    assert LINK in plain
    assert f'href="{LINK}"' in html
    assert "owner: Bob; due: Fri 27 Nov 2026" in plain
    assert "<strong>Owner:</strong> Bob" in html and "<strong>Due:</strong> Fri 27 Nov 2026" in html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_hostile_text_arrives_inert() -> None:
    message = _compose(_content(title=f"Q4 {HOSTILE}", summary=[f"He said {HOSTILE}"],
                                questions=[HOSTILE], topics=[HOSTILE],
                                participants=[Participant(HOSTILE, None)],
                                action_items=[ActionItemLine(HOSTILE, HOSTILE, HOSTILE)]))
    plain, html = _parts(message)
    tags = _Tags()
    tags.feed(html)
    names = {tag for tag, _ in tags.tags}
    assert "script" not in names and "img" not in names
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert HOSTILE in plain  # the plain part shows the text as it was said
    assert "\n" not in _parse(message)["Subject"]


def test_no_remote_resources_and_inline_styles_only() -> None:
    _, html = _parts(_compose(_content()))
    tags = _Tags()
    tags.feed(html)
    assert not any("src" in attrs for _, attrs in tags.tags)
    assert {tag for tag, _ in tags.tags}.isdisjoint({"img", "link", "style", "script", "iframe"})
    hrefs = [attrs["href"] for tag, attrs in tags.tags if "href" in attrs]
    assert hrefs == [LINK]  # the one link is the conversation page
    assert not re.search(r"url\(", html)


def test_empty_conversation_still_makes_a_clear_email() -> None:
    plain, html = _parts(_compose(_content(summary=[], action_items=[], follow_ups=[], questions=[], topics=[],
                                           participants=[], duration_s=None, started_at=None)))
    assert "nothing was transcribed" in plain and "nothing was transcribed" in html
    assert "Duration: unknown" in plain
    assert plain.count("(none)") == 4


def test_long_lists_are_cut_with_a_pointer_to_the_page() -> None:
    plain, html = _parts(_compose(_content(questions=[f"Question {i}?" for i in range(60)])))
    assert "Question 49?" in plain and "Question 50?" not in plain
    assert "and 10 more on the conversation page" in plain and "and 10 more on the conversation page" in html


def test_formatting_helpers() -> None:
    assert format_duration(3725) == "1 h 02 min"
    assert format_duration(59.6) == "1 min 00 s"
    assert format_duration(7) == "7 s"
    assert format_due("2026-11-27T00:00:00-08:00") == "Fri 27 Nov 2026"
    assert format_due("2026-11-27T15:30:00-08:00") == "Fri 27 Nov 2026 15:30 (UTC-08:00)"
    assert format_due(None) is None


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay_s(n, 2.0, 20.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 20.0]


def test_smtp_url_forms() -> None:
    plain = SmtpTarget.parse("smtp://relay.internal")
    assert (plain.host, plain.port, plain.implicit_tls, plain.starttls) == ("relay.internal", 25, False, "auto")
    submission = SmtpTarget.parse("smtp://me%40corp.test:p%3Ass@mail.corp.test?starttls=require")
    assert (submission.port, submission.username, submission.password, submission.starttls) == (
        587, "me@corp.test", "p:ss", "require")
    implicit = SmtpTarget.parse("smtps://u:p@mail.corp.test")
    assert (implicit.port, implicit.implicit_tls) == (465, True)
    assert "p:ss" not in submission.describe()


def test_bad_smtp_urls_say_what_is_wrong() -> None:
    for url, message in (("http://x", "smtp:// or smtps://"), ("smtp://", "no host"),
                         ("smtp://x?starttls=maybe", "auto, require or never"), ("smtp://x?tls=1", "unknown"),
                         ("smtps://x?starttls=require", "smtps:// is TLS")):
        with pytest.raises(EmailConfigError, match=re.escape(message)):
            SmtpTarget.parse(url)


def test_non_ascii_text_survives_the_wire() -> None:
    title = "Réunion d\u2019équipe \u2014 café 東京"
    message = _compose(_content(title=title, questions=["Qui paie le café ?"]))
    parsed = _parse(message)
    assert parsed["Subject"] == f"Summary: {title}"
    plain, html = _parts(message)
    assert title in plain and "Qui paie le café ?" in plain
    assert "Réunion d\u2019équipe" in html
