"""Abstractive summaries from an OpenAI-compatible chat endpoint (``CONVOSCOPE_LLM_URL``), over httpx.

Any failure (connection, timeout, HTTP status, a reply that is not a chat completion, an empty summary) raises
``SummaryUnavailable``; the caller falls back to the extractive summary. Each point of the reply is linked to
the messages it shares the most content words with, so ``messageRefs`` point somewhere useful.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from processors.summary.extractive import SummaryItem, SummarySource, content_tokens

__all__ = ["AbstractiveSummarizer", "SummaryUnavailable", "chat_completions_url"]

MAX_TRANSCRIPT_CHARS = 24_000
MAX_POINTS = 8
REFS_PER_POINT = 2
INSTRUCTIONS = (
    "You summarize meeting transcripts faithfully. Write at most {points} short points, one per line, each a "
    "complete sentence in the third person that names who said or agreed to what. Use only facts from the "
    "transcript. No heading, no preamble."
)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


class SummaryUnavailable(RuntimeError):
    """The abstractive summarizer gave no usable summary; ``str(exc)`` says why."""


def chat_completions_url(base: str) -> str:
    """``…/v1`` or the full ``…/chat/completions`` URL, as users paste either."""
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else base + "/chat/completions"


def _transcript(sources: Sequence[SummarySource]) -> str:
    lines = [f"{s.speaker}: {s.text}" for s in sources]
    text = "\n".join(lines)
    if len(text) > MAX_TRANSCRIPT_CHARS:  # keep the start and the end, where agendas and decisions usually are
        half = MAX_TRANSCRIPT_CHARS // 2
        text = text[:half] + "\n[…]\n" + text[-half:]
    return text


def _points(content: str) -> list[str]:
    points = [_BULLET.sub("", line).strip() for line in content.splitlines()]
    return [p for p in points if p][:MAX_POINTS]


def _references(point: str, sources: Sequence[SummarySource]) -> tuple[str, ...]:
    wanted = set(content_tokens(point))
    overlap = [(len(wanted & set(content_tokens(s.text))), -i, s.message_id) for i, s in enumerate(sources)]
    best = sorted((o for o in overlap if o[0] > 0), reverse=True)[:REFS_PER_POINT]
    return tuple(message_id for _, _, message_id in sorted(best, key=lambda o: -o[1]))


@dataclass(frozen=True)
class AbstractiveSummarizer:
    url: str
    model: str
    api_key: str | None
    timeout_s: float

    async def summarize(self, sources: Sequence[SummarySource]) -> list[SummaryItem]:
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": INSTRUCTIONS.format(points=MAX_POINTS)},
                {"role": "user", "content": _transcript(sources)},
            ],
        }
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await asyncio.wait_for(
                    client.post(chat_completions_url(self.url), json=body, headers=headers), self.timeout_s
                )
        except TimeoutError as exc:
            raise SummaryUnavailable(f"no answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise SummaryUnavailable(f"request failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise SummaryUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SummaryUnavailable(f"not a chat completion: {response.text[:200]}") from exc
        points = _points(content) if isinstance(content, str) else []
        if not points:
            raise SummaryUnavailable("the model returned an empty summary")
        return [SummaryItem(point, _references(point, sources), "", 1.0) for point in points]
