"""Errors of the transcription processor. Callers catch these, never a third-party type."""

from __future__ import annotations

__all__ = ["ModelIntegrityError", "ModelNotInstalledError", "RedactionUnavailableError", "TranscriptionError"]


class TranscriptionError(Exception):
    """Root of the transcription processor's errors."""

    retriable = False


class ModelNotInstalledError(TranscriptionError):
    """The packages that ship the selected speech model are not installed."""


class ModelIntegrityError(TranscriptionError):
    """A reassembled model file does not have the expected size or SHA-256."""


class RedactionUnavailableError(TranscriptionError):
    """A stream asked for person redaction and the name detector (spaCy's English model) cannot be loaded."""
