"""Errors of the Async API, each with the HTTP status its client gets."""

from __future__ import annotations

__all__ = [
    "AudioNotRetained",
    "ConversationStillLive",
    "InvalidOptions",
    "MediaFetchFailed",
    "MediaNotAllowed",
    "RecordedAudioError",
    "RecordingTooLarge",
    "UndecodableAudio",
]


class RecordedAudioError(Exception):
    """Root of the Async API's errors: the request is refused and nothing of it is kept."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidOptions(RecordedAudioError):
    """A query parameter or JSON field has the wrong type or value."""


class UndecodableAudio(RecordedAudioError):
    """The bytes are not audio we can decode (or contain none)."""


class RecordingTooLarge(RecordedAudioError):
    """Over the upload size or duration limit."""

    status_code = 413


class MediaNotAllowed(RecordedAudioError):
    """A file:// URL outside the directories the operator allowed, or a URL in a blocked network."""

    status_code = 403


class MediaFetchFailed(RecordedAudioError):
    """The media URL could not be downloaded."""


class AudioNotRetained(RecordedAudioError):
    """Reprocessing: the conversation's audio is no longer (completely) on the audio topic."""

    status_code = 410


class ConversationStillLive(RecordedAudioError):
    """Reprocessing: a stream of the conversation has not ended yet."""

    status_code = 409
