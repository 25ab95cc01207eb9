"""Audio for the SDK examples: a WAV file you pass, or a few sentences spoken by espeak-ng."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

__all__ = ["load_speech"]

DEFAULT_TEXT = (
    "Good morning everyone. Can you finish the payment tests before Friday? "
    "I will send the test report to the whole team on Thursday."
)


def load_speech(path: str | None = None, text: str = DEFAULT_TEXT) -> tuple[bytes, int]:
    """(16-bit mono PCM, sample rate) from ``path``, or synthesized from ``text`` when no path is given."""
    if path is None:
        if shutil.which("espeak-ng") is None:
            raise SystemExit("pass a mono 16-bit WAV file, or install espeak-ng to synthesize one")
        data = subprocess.run(["espeak-ng", "-s", "150", "--stdout", text], check=True, capture_output=True).stdout
        source: str | io.BytesIO = io.BytesIO(data)
    else:
        source = path
    with wave.open(source, "rb") as recording:
        if recording.getnchannels() != 1 or recording.getsampwidth() != 2:
            raise SystemExit("the examples stream mono 16-bit PCM WAV files")
        return recording.readframes(recording.getnframes()), recording.getframerate()
