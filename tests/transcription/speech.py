"""Speech fixtures synthesised with espeak-ng, with the truth (text, speech start/end sample) of each utterance.

Also used by ``bench/transcription_worker.py``. Synthesis and WER come from ``convoscope.synth`` and
``convoscope.evaluation``; this module adds one continuous stream with exact speech boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convoscope.evaluation import word_error_rate as wer
from convoscope.synth import speak

__all__ = [
    "MEETING_SCRIPT",
    "SAMPLE_RATE_HZ",
    "Utterance",
    "build_meeting",
    "synthesize",
    "wer",
]

SAMPLE_RATE_HZ = 16_000
SPEECH_THRESHOLD = 300  # |s16| above which a 10 ms block counts as sound, to find the truth boundaries

# (text, espeak voice). Sentences with commas inside, so a too-eager endpointer would split them.
MEETING_SCRIPT: tuple[tuple[str, str], ...] = (
    ("Good morning everyone, thanks for joining the call.", "en-us+m3"),
    ("Let's start with the quarterly numbers, then move on to hiring.", "en-us+f3"),
    ("Revenue grew by twelve percent, which is better than we planned.", "en-us+m3"),
    ("That is great news for the whole team.", "en-us+f2"),
    ("We still need two more engineers before the end of March.", "en-us+f3"),
    ("I will send the job description to everyone this afternoon.", "en-us+m3"),
)


@dataclass(frozen=True)
class Utterance:
    text: str
    start_sample: int
    """First sample of audible speech."""
    end_sample: int
    """One past the last sample of audible speech."""


def synthesize(text: str, voice: str = "en-us+f3", words_per_minute: int = 165) -> np.ndarray:
    """espeak-ng speech at 16 kHz s16 mono, cut to its audible part (which defines the truth boundaries)."""
    audio = speak(text, voice, words_per_minute)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > SPEECH_THRESHOLD)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def build_meeting(
    script: tuple[tuple[str, str], ...] = MEETING_SCRIPT,
    gaps_s: tuple[float, ...] = (0.9, 1.3, 1.0, 1.6, 0.8),
    lead_in_s: float = 0.8,
    tail_s: float = 1.0,
    noise_level: float = 20.0,
) -> tuple[np.ndarray, list[Utterance]]:
    """One stream: lead-in silence, the utterances separated by ``gaps_s`` (cycled), a tail; faint noise."""
    pieces: list[np.ndarray] = [np.zeros(round(lead_in_s * SAMPLE_RATE_HZ), dtype=np.int16)]
    truth: list[Utterance] = []
    position = len(pieces[0])
    for index, (text, voice) in enumerate(script):
        speech = synthesize(text, voice)
        truth.append(Utterance(text, position, position + len(speech)))
        pieces.append(speech)
        position += len(speech)
        gap_s = tail_s if index == len(script) - 1 else gaps_s[index % len(gaps_s)]
        gap = np.zeros(round(gap_s * SAMPLE_RATE_HZ), dtype=np.int16)
        pieces.append(gap)
        position += len(gap)
    audio = np.concatenate(pieces).astype(np.float32)
    audio += np.random.default_rng(7).normal(0.0, noise_level, len(audio)).astype(np.float32)
    return np.clip(audio, -32768, 32767).astype(np.int16), truth
