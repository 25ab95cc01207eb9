"""Printing a live transcript to a terminal: interim lines rewrite in place, final lines are committed."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from producers.replay.client import ReceivedMessage

__all__ = ["LiveTranscriptPrinter"]

CLEAR_LINE = "\r\033[K"


def _speaker(user: dict[str, Any]) -> str:
    return str(user.get("name") or user.get("userId") or "Speaker")


class LiveTranscriptPrinter:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self._live = ""
        self._last_interim: dict[str, str] = {}

    def __call__(self, received: ReceivedMessage) -> None:
        body = received.body
        if body.get("type") == "message" and body["message"].get("type") == "recognition_result":
            message = body["message"]
            if message.get("isFinal"):
                return  # the message_response that follows carries the committed line
            who = _speaker(message.get("user", {}))
            text = message["punctuated"]["transcript"].strip()
            if self._last_interim.get(who) == text or not text:
                return
            self._last_interim[who] = text
            self._show_live(f"  … {who}: {text}")
        elif body.get("type") == "message_response":
            for message in body["messages"]:
                who = _speaker(message.get("from", {}))
                self._last_interim.pop(who, None)
                offset = float(message.get("duration", {}).get("timeOffset", 0.0))
                minutes, seconds = divmod(offset, 60)
                self._commit(f"[{int(minutes):02d}:{seconds:04.1f}] {who}: {message['payload']['content'].strip()}")
        elif body.get("type") == "error":
            self._commit(f"error: {body.get('message')}: {body.get('details')}")

    def _show_live(self, line: str) -> None:
        if self.tty:
            width = 120
            self.out.write(CLEAR_LINE + line[:width])
            self._live = line
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def _commit(self, line: str) -> None:
        if self.tty:
            self.out.write(CLEAR_LINE)
        self.out.write(line + "\n")
        self._live = ""
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._live:
            self.out.write(CLEAR_LINE)
            self.out.flush()
