"""The ``actions`` of a Telephony API start body and of a streaming ``start_request``, validated once for both. Pure.

The one action there is, ``sendSummaryEmail`` (``{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters":
{"emails": [...]}}``), asks for the conversation's summary email once it completes. The recipients travel on the
conversation event the ingest path publishes at start (attribute ``summary_emails``, comma-separated), where the
store worker turns them into a ``summary_emails`` row and the email sink (``sinks/email``) sends from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTION_NAMES",
    "EMAIL_ADDRESS",
    "MAX_SUMMARY_RECIPIENTS",
    "SUMMARY_EMAILS_ATTRIBUTE",
    "Action",
    "ActionError",
    "parse_actions",
    "parse_recipients_attribute",
    "recipients_attribute",
    "summary_email_recipients",
]

SEND_SUMMARY_EMAIL = "sendSummaryEmail"
ACTION_NAMES = frozenset({SEND_SUMMARY_EMAIL})
MAX_ACTIONS = 10
MAX_SUMMARY_RECIPIENTS = 50
MAX_ADDRESS_CHARS = 254  # RFC 5321's path limit less the angle brackets
SUMMARY_EMAILS_ATTRIBUTE = "summary_emails"
"""The conversation event attribute carrying the requested recipients, comma-separated."""

# A plain addr-spec: no display name, comments, quoting or whitespace (which also rules out header injection).
# The domain is a host name of dot-separated labels.
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_ADDRESS = re.compile(rf"^{_LOCAL_PART}@{_LABEL}(?:\.{_LABEL})*$")


class ActionError(ValueError):
    """An action the caller must fix; the message says what."""


@dataclass(frozen=True)
class Action:
    name: str
    invoke_on: str
    parameters: dict[str, Any]
    raw: dict[str, Any]


def _recipients(parameters: Any, where: str) -> tuple[str, ...]:
    if not isinstance(parameters, dict):
        raise ActionError(f"{where}.parameters must be an object such as {{\"emails\": [\"ann@example.com\"]}}.")
    emails = parameters.get("emails")
    if not isinstance(emails, list) or not emails:
        raise ActionError(f"{where}.parameters.emails must be a non-empty list of email addresses.")
    if len(emails) > MAX_SUMMARY_RECIPIENTS:
        raise ActionError(f"{where}.parameters.emails has {len(emails)} addresses; at most "
                          f"{MAX_SUMMARY_RECIPIENTS} are allowed.")
    for index, email in enumerate(emails):
        if not isinstance(email, str) or len(email) > MAX_ADDRESS_CHARS or not EMAIL_ADDRESS.match(email):
            raise ActionError(f"{where}.parameters.emails[{index}] ({email!r:.80}) is not an email address such "
                              "as ann@example.com.")
    return tuple(dict.fromkeys(emails))


def parse_actions(value: Any) -> tuple[Action, ...]:
    """``actions`` as sent (a list; ``None``, ``{}`` and ``[]`` mean none); raises ActionError."""
    if value in (None, {}, []):
        return ()
    if not isinstance(value, list):
        raise ActionError("actions must be a list of {invokeOn, name, parameters}.")
    if len(value) > MAX_ACTIONS:
        raise ActionError(f"at most {MAX_ACTIONS} actions are allowed.")
    actions = []
    for index, action in enumerate(value):
        where = f"actions[{index}]"
        if not isinstance(action, dict) or action.get("invokeOn") not in ("start", "stop") or not action.get("name"):
            raise ActionError(f"{where}: each action needs invokeOn (\"start\" or \"stop\") and a name.")
        name = action["name"]
        if name not in ACTION_NAMES:
            raise ActionError(f"{where}: unknown action {name!r:.80}; supported: {SEND_SUMMARY_EMAIL}.")
        if name == SEND_SUMMARY_EMAIL:
            if action["invokeOn"] != "stop":
                raise ActionError(f"{where}: {SEND_SUMMARY_EMAIL} runs when the conversation ends; use invokeOn "
                                  "\"stop\".")
            _recipients(action.get("parameters"), where)
        actions.append(Action(name, action["invokeOn"], dict(action.get("parameters") or {}), action))
    return tuple(actions)


def summary_email_recipients(actions: Iterable[Action]) -> tuple[str, ...]:
    """Everyone the ``sendSummaryEmail`` actions name, once each (first spelling kept), in order."""
    seen: dict[str, str] = {}
    for action in actions:
        if action.name == SEND_SUMMARY_EMAIL:
            for email in _recipients(action.parameters, "action"):
                seen.setdefault(email.lower(), email)
    return tuple(seen.values())


def recipients_attribute(recipients: Iterable[str]) -> dict[str, str]:
    """The event attributes that carry ``recipients`` (none when there are none). Addresses hold no commas."""
    joined = ",".join(recipients)
    return {SUMMARY_EMAILS_ATTRIBUTE: joined} if joined else {}


def parse_recipients_attribute(attributes: dict[str, str] | None) -> list[str]:
    """The recipients an event's attributes carry; malformed entries (not from our producers) are dropped."""
    raw = (attributes or {}).get(SUMMARY_EMAILS_ATTRIBUTE) or ""
    return [email for email in (part.strip() for part in raw.split(",")) if EMAIL_ADDRESS.match(email)]
