"""Errors of the transcription processor. Callers catch these, never a third-party type."""

from __future__ import annotations

__all__ = ["ModelIntegrityError", "ModelNotInstalledError", "TranscriptionError"]


class TranscriptionError(Exception):
    """Root of the transcription processor's errors."""

    retriable = False


class ModelNotInstalledError(TranscriptionError):
    """The packages that ship the selected speech model are not installed."""


class ModelIntegrityError(TranscriptionError):
    """A reassembled model file does not have the expected size or SHA-256."""
