"""Scripted meetings spoken by espeak-ng, with exact timings: for the demo, tests and benchmarks.

Each speaker gets a full-length track (their speech, silence elsewhere), as each participant's
own microphone would produce; the script with its computed times is the ground truth.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DEMO_SCRIPT",
    "SAMPLE_RATE_HZ",
    "Line",
    "Meeting",
    "SynthesisUnavailable",
    "Utterance",
    "build_meeting",
    "speak",
]

SAMPLE_RATE_HZ = 16_000
# Voices and wording chosen so Whisper tiny.en hears the script well (espeak-ng is not a human voice).
DEFAULT_VOICES = ("en-gb+f4", "en-us+m3", "en-us+m7", "en-gb")
SPEECH_RATE_WPM = 160
CACHE_DIR = Path.home() / ".cache" / "convoscope" / "speech"


class SynthesisUnavailable(RuntimeError):
    """espeak-ng or sox is not installed."""


@dataclass(frozen=True)
class Line:
    speaker: str
    text: str
    pause_before_s: float = 0.8
    overlap_s: float = 0.0  # start this long before the previous line ends


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str
    start_s: float
    end_s: float


@dataclass
class Meeting:
    utterances: list[Utterance]
    tracks: dict[str, np.ndarray] = field(repr=False)  # speaker → int16 samples at 16 kHz
    duration_s: float = 0.0

    @property
    def speakers(self) -> list[str]:
        return list(self.tracks)

    def track_bytes(self, speaker: str) -> bytes:
        return self.tracks[speaker].astype("<i2").tobytes()


DEMO_SCRIPT: tuple[Line, ...] = (
    Line("Alice", "Good morning everyone. Today we will go over the launch plan for next quarter."),
    Line("Bob", "Thanks Alice. The new pricing page is ready, but the payment system still needs more testing."),
    Line("Alice", "Can you finish the payment tests before Friday?"),
    Line("Bob", "Yes, I will send the test report to everyone on Thursday."),
    Line("Alice", "Great. I will talk to the marketing team about the announcement."),
)


def _require_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        raise SynthesisUnavailable(
            f"{' and '.join(missing)} not installed; on Debian: apt-get install espeak-ng sox"
        )


def speak(text: str, voice: str, words_per_minute: int = SPEECH_RATE_WPM) -> np.ndarray:
    """One line of speech, silence trimmed from both ends, int16 at 16 kHz. Cached on disk."""
    _require_tools()
    key = hashlib.sha256(f"{voice}|{words_per_minute}|{text}".encode()).hexdigest()[:24]
    cached = CACHE_DIR / f"{key}.s16"
    if cached.exists():
        return np.frombuffer(cached.read_bytes(), dtype="<i2").copy()
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(words_per_minute), "--stdout", text],
        check=True, capture_output=True,
    ).stdout
    raw = subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16", "-e", "signed",
         "-", "silence", "1", "0.02", "0.5%", "reverse", "silence", "1", "0.02", "0.5%", "reverse"],
        input=wav, check=True, capture_output=True,
    ).stdout
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(raw)
    return np.frombuffer(raw, dtype="<i2").copy()


def build_meeting(
    script: Sequence[Line],
    voices: dict[str, str] | None = None,
    lead_in_s: float = 0.5,
    tail_s: float = 1.5,
) -> Meeting:
    speakers = list(dict.fromkeys(line.speaker for line in script))
    voices = voices or {name: DEFAULT_VOICES[i % len(DEFAULT_VOICES)] for i, name in enumerate(speakers)}
    clips = [speak(line.text, voices[line.speaker]) for line in script]
    utterances: list[Utterance] = []
    cursor = lead_in_s
    for index, (line, clip) in enumerate(zip(script, clips, strict=True)):
        start = cursor + (line.pause_before_s if index else 0.0) - line.overlap_s
        end = start + len(clip) / SAMPLE_RATE_HZ
        utterances.append(Utterance(line.speaker, line.text, round(start, 4), round(end, 4)))
        cursor = end
    duration = cursor + tail_s
    total = int(duration * SAMPLE_RATE_HZ)
    tracks = {name: np.zeros(total, dtype=np.int16) for name in speakers}
    for utterance, clip in zip(utterances, clips, strict=True):
        begin = round(utterance.start_s * SAMPLE_RATE_HZ)
        tracks[utterance.speaker][begin : begin + len(clip)] = clip
    return Meeting(utterances=utterances, tracks=tracks, duration_s=duration)
