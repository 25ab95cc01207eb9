"""Whisper alone: how much audio one recognizer transcribes per second with one decode lane or several.

Decodes the utterances of the synthesized demo meeting (repeated to ~100 s of speech) with ``transcribe_final``
(beam 5), as the transcription worker does, from as many threads as the recognizer has lanes, and prints the real-
time factor and the CPU used. No Kafka, no VAD: the figure is the decoder's ceiling on this machine.

    .venv/bin/python bench/decode_lanes.py                    # tiny.en: 1 lane x 2 threads, 2 x 1, 2 x 2
    .venv/bin/python bench/decode_lanes.py --model base
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from convoscope.synth import DEMO_SCRIPT, build_meeting
from processors.transcription.asr import WhisperRecognizer
from processors.transcription.vad import SAMPLE_RATE_HZ

CONFIGURATIONS = ((1, 2), (2, 1), (2, 2))  # (lanes, threads per decode)


def utterances(repeat: int) -> list[np.ndarray]:
    meeting = build_meeting(DEMO_SCRIPT)
    clips = []
    for utterance in meeting.utterances:
        pcm = np.frombuffer(meeting.track_bytes(utterance.speaker), dtype="<i2")
        start, end = int(utterance.start_s * SAMPLE_RATE_HZ), int(utterance.end_s * SAMPLE_RATE_HZ)
        clips.append(pcm[start:end].astype(np.float32) / 32768)
    return clips * repeat


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"])
    parser.add_argument("--repeat", type=int, default=4, help="times the meeting's utterances are decoded")
    args = parser.parse_args()
    clips = utterances(args.repeat)
    audio_s = sum(len(c) for c in clips) / SAMPLE_RATE_HZ
    print(f"{args.model}: {len(clips)} utterances, {audio_s:.1f} s of speech, beam 5")
    print("lanes  threads  real-time factor  CPU %")
    for lanes, threads in CONFIGURATIONS:
        recognizer = WhisperRecognizer(args.model, threads=threads, lanes=lanes)
        recognizer.warm_up()
        started, cpu = time.monotonic(), cpu_seconds()
        with ThreadPoolExecutor(lanes) as pool:
            list(pool.map(recognizer.transcribe_final, clips))  # beam 5, its default
        wall = time.monotonic() - started
        print(f"{lanes:5d}  {threads:7d}  {audio_s / wall:15.1f}x  {100 * (cpu_seconds() - cpu) / wall:5.0f}")


if __name__ == "__main__":
    main()
