"""Replaying recorded audio through the public streaming API, paced like a live client."""

from producers.replay.client import StreamResult, fetch_token, stream_pcm
from producers.replay.files import load_audio_file

__all__ = ["StreamResult", "fetch_token", "load_audio_file", "stream_pcm"]
