"""Recorded calls through the Async API: decode files, publish them to the audio topic like live audio, track jobs."""

from producers.recorded.exceptions import RecordedAudioError

__all__ = ["RecordedAudioError"]
