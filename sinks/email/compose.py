"""The summary email of a conversation, from plain data to a MIME message. Pure: no database, no SMTP.

``multipart/alternative`` with a ``text/plain`` part and a ``text/html`` part. The HTML is a single-column table
layout with inline styles only (no ``<style>`` block, external CSS, fonts or images), which mail clients render
alike; every piece of conversation text is escaped, so a transcript holding markup arrives as text.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TypeVar

__all__ = [
    "ActionItemLine",
    "Participant",
    "SummaryEmailContent",
    "compose_summary_email",
    "format_due",
    "format_duration",
    "summary_message_id",
]

T = TypeVar("T")
SUBJECT_PREFIX = "Summary: "
MAX_SUBJECT_TITLE_CHARS = 150
MAX_LIST_ITEMS = 50
"""Long lists (a four-hour call's questions) are cut in the email; the page link has them all."""

# Inline styles, named once; a table layout is what Outlook's Word renderer handles as well as the others.
_FONT = "font-family:Arial,Helvetica,sans-serif;"
_STYLE_BODY = f"margin:0;padding:0;background-color:#f4f5f7;{_FONT}"
_STYLE_CARD = "background-color:#ffffff;border:1px solid #e1e4e8;border-radius:6px;"
_STYLE_TITLE = f"{_FONT}font-size:22px;line-height:28px;color:#111827;margin:0 0 4px 0;"
_STYLE_META = f"{_FONT}font-size:13px;line-height:20px;color:#4b5563;margin:0;"
_STYLE_HEADING = f"{_FONT}font-size:15px;line-height:22px;color:#111827;margin:20px 0 6px 0;font-weight:bold;"
_STYLE_TEXT = f"{_FONT}font-size:14px;line-height:21px;color:#1f2937;"
_STYLE_NOTE = f"{_FONT}font-size:12px;line-height:18px;color:#6b7280;"
_STYLE_BUTTON = (f"{_FONT}display:inline-block;background-color:#2563eb;color:#ffffff;font-size:14px;"
                 "font-weight:bold;text-decoration:none;padding:10px 18px;border-radius:4px;")


@dataclass(frozen=True)
class Participant:
    name: str
    email: str | None = None


@dataclass(frozen=True)
class ActionItemLine:
    text: str
    owner: str | None = None
    due: str | None = None
    """Already formatted for people (``format_due``)."""


@dataclass(frozen=True)
class SummaryEmailContent:
    """Everything the email shows, as plain values."""

    conversation_id: str
    title: str
    started_at: dt.datetime | None
    duration_s: float | None
    link: str
    participants: Sequence[Participant] = ()
    summary: Sequence[str] = ()
    action_items: Sequence[ActionItemLine] = ()
    follow_ups: Sequence[ActionItemLine] = ()
    questions: Sequence[str] = ()
    topics: Sequence[str] = ()
    extra_note: str | None = field(default=None)


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "unknown"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def format_due(due_by: str | None) -> str | None:
    """An insight's ``due_by`` (ISO 8601 with offset) as a date, with the time when it is not midnight."""
    if not due_by:
        return None
    try:
        due = dt.datetime.fromisoformat(due_by)
    except ValueError:
        return due_by
    if (due.hour, due.minute) == (0, 0):
        return due.strftime("%a %d %b %Y")
    offset = due.strftime("%z")
    return due.strftime("%a %d %b %Y %H:%M") + (f" (UTC{offset[:3]}:{offset[3:]})" if offset else "")


def _started(content: SummaryEmailContent) -> str:
    if content.started_at is None:
        return "unknown"
    return content.started_at.astimezone(dt.UTC).strftime("%a %d %b %Y %H:%M UTC")


def _participant_text(participant: Participant) -> str:
    return f"{participant.name} <{participant.email}>" if participant.email else participant.name


def _item_suffix(item: ActionItemLine) -> str:
    details = [f"owner: {item.owner}" if item.owner else "", f"due: {item.due}" if item.due else ""]
    shown = "; ".join(d for d in details if d)
    return f" ({shown})" if shown else ""


def _cut(items: Sequence[T]) -> tuple[list[T], int]:
    return list(items[:MAX_LIST_ITEMS]), max(0, len(items) - MAX_LIST_ITEMS)


# -- plain text ------------------------------------------------------------------------------------------


def _text_section(heading: str, lines: Sequence[str], hidden: int) -> list[str]:
    out = ["", heading.upper(), "-" * len(heading)]
    out += [f"- {line}" for line in lines] if lines else ["(none)"]
    if hidden:
        out.append(f"... and {hidden} more on the conversation page")
    return out


def _plain_text(content: SummaryEmailContent) -> str:
    lines = [
        content.title,
        "=" * min(len(content.title), 72),
        f"Date: {_started(content)}",
        f"Duration: {format_duration(content.duration_s)}",
        "Participants: " + (", ".join(_participant_text(p) for p in content.participants) or "(none recorded)"),
    ]
    lines += ["", "SUMMARY", "-------"]
    lines += list(content.summary) if content.summary else ["(no summary: nothing was transcribed)"]
    for heading, items in (("Action items", content.action_items), ("Follow-ups", content.follow_ups)):
        shown, hidden = _cut(items)
        lines += _text_section(heading, [f"{i.text}{_item_suffix(i)}" for i in shown], hidden)
    for heading, texts in (("Questions", content.questions), ("Topics", content.topics)):
        shown, hidden = _cut(texts)
        lines += _text_section(heading, shown, hidden)
    lines += ["", f"Full conversation: {content.link}"]
    if content.extra_note:
        lines += ["", content.extra_note]
    lines += ["", f"Conversation {content.conversation_id}, sent by convoscope because a sendSummaryEmail action "
                  "asked for it."]
    return "\n".join(lines) + "\n"


# -- HTML ------------------------------------------------------------------------------------------------


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _html_heading(text: str) -> str:
    return f'<p style="{_STYLE_HEADING}">{_e(text)}</p>'


def _html_list(items: Sequence[str], hidden: int, empty: str) -> str:
    """``items`` are already-escaped HTML fragments."""
    if not items:
        return f'<p style="{_STYLE_NOTE}margin:0;">{_e(empty)}</p>'
    rows = "".join(
        f'<tr><td valign="top" style="{_STYLE_TEXT}padding:0 8px 6px 0;">&#8226;</td>'
        f'<td style="{_STYLE_TEXT}padding:0 0 6px 0;">{item}</td></tr>'
        for item in items
    )
    more = (f'<p style="{_STYLE_NOTE}margin:0;">&#8230; and {hidden} more on the conversation page</p>'
            if hidden else "")
    return f'<table role="presentation" cellpadding="0" cellspacing="0" border="0">{rows}</table>{more}'


def _html_item(item: ActionItemLine) -> str:
    details = []
    if item.owner:
        details.append(f"<strong>Owner:</strong> {_e(item.owner)}")
    if item.due:
        details.append(f"<strong>Due:</strong> {_e(item.due)}")
    detail_html = f'<br><span style="{_STYLE_NOTE}">{" &#183; ".join(details)}</span>' if details else ""
    return _e(item.text) + detail_html


def _html(content: SummaryEmailContent) -> str:
    participants = ", ".join(
        _e(p.name) + (f" &lt;{_e(p.email)}&gt;" if p.email else "") for p in content.participants
    ) or "(none recorded)"
    parts = [
        f'<p style="{_STYLE_TITLE}">{_e(content.title)}</p>',
        f'<p style="{_STYLE_META}"><strong>Date:</strong> {_e(_started(content))} &#183; '
        f'<strong>Duration:</strong> {_e(format_duration(content.duration_s))}</p>',
        f'<p style="{_STYLE_META}"><strong>Participants:</strong> {participants}</p>',
        _html_heading("Summary"),
    ]
    if content.summary:
        parts += [f'<p style="{_STYLE_TEXT}margin:0 0 8px 0;">{_e(s)}</p>' for s in content.summary]
    else:
        parts.append(f'<p style="{_STYLE_NOTE}margin:0;">No summary: nothing was transcribed.</p>')
    for heading, items in (("Action items", content.action_items), ("Follow-ups", content.follow_ups)):
        shown, hidden = _cut(items)
        parts += [_html_heading(heading), _html_list([_html_item(i) for i in shown], hidden, "None found.")]
    for heading, texts in (("Questions", content.questions), ("Topics", content.topics)):
        shown, hidden = _cut(texts)
        parts += [_html_heading(heading), _html_list([_e(t) for t in shown], hidden, "None found.")]
    link = _e(content.link)
    parts.append(
        f'<p style="margin:24px 0 8px 0;"><a href="{link}" style="{_STYLE_BUTTON}">Open the conversation</a></p>'
        f'<p style="{_STYLE_NOTE}margin:0;word-break:break-all;">Or paste this link into a browser: {link}</p>'
    )
    if content.extra_note:
        parts.append(f'<p style="{_STYLE_NOTE}margin:12px 0 0 0;">{_e(content.extra_note)}</p>')
    body = "\n".join(parts)
    footer = (f"Conversation {_e(content.conversation_id)}, sent by convoscope because a sendSummaryEmail action "
              "asked for it.")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(content.title)}</title></head>\n"
        f'<body style="{_STYLE_BODY}">\n'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background-color:#f4f5f7;"><tr><td align="center" style="padding:24px 12px;">\n'
        '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" '
        f'style="max-width:600px;width:100%;{_STYLE_CARD}"><tr><td style="padding:24px;">\n'
        f"{body}\n"
        "</td></tr></table>\n"
        f'<p style="{_STYLE_NOTE}margin:12px 0 0 0;text-align:center;">{footer}</p>\n'
        "</td></tr></table>\n</body></html>\n"
    )


# -- the message -----------------------------------------------------------------------------------------


def summary_message_id(conversation_id: str, domain: str) -> str:
    """One Message-ID per conversation: were the email ever sent twice (a crash between the server's acceptance
    and our record of it), mail systems that deduplicate by Message-ID show it once."""
    return f"<summary.{conversation_id}@{domain}>"


def _subject(title: str) -> str:
    flat = " ".join(title.split())  # no line breaks in a header
    if len(flat) > MAX_SUBJECT_TITLE_CHARS:
        flat = flat[: MAX_SUBJECT_TITLE_CHARS - 1] + "\u2026"
    return SUBJECT_PREFIX + flat


def compose_summary_email(content: SummaryEmailContent, *, sender: str, recipients: Sequence[str], message_id: str,
                          date: dt.datetime | None = None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = _subject(content.title)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to this
    message.set_content(_plain_text(content), subtype="plain", charset="utf-8")
    message.add_alternative(_html(content), subtype="html", charset="utf-8")
    return message
