"""Decoding uploads with PyAV: every format users send, channels kept apart or mixed down, bad files refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from producers.recorded.decode import decode_recording
from producers.recorded.exceptions import RecordingTooLarge, UndecodableAudio
from tests.recorded.audio_files import write_recording

RATE = 16_000


def tone(hz: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def track(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), dtype="<i2")


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE / len(samples))


@pytest.mark.parametrize("extension", [".wav", ".mp3", ".flac", ".ogg", ".m4a"])
def test_stereo_recordings_become_one_track_per_channel(tmp_path: Path, extension: str) -> None:
    source = write_recording(tmp_path / f"call{extension}", [tone(440, 2.0), tone(1000, 2.0)])
    work = tmp_path / "work"
    work.mkdir()
    decoded = decode_recording(source, work, max_duration_s=60)
    assert decoded.source_channels == 2 and not decoded.mixed_down
    assert len(decoded.tracks) == 2
    # Encoders add a little padding (AAC priming), never lose audio.
    assert 2.0 <= decoded.duration_s < 2.2
    left, right = (track(path) for path in decoded.tracks)
    assert len(left) == len(right) == decoded.samples
    assert abs(dominant_hz(left) - 440) < 10 and abs(dominant_hz(right) - 1000) < 10


def test_sample_rates_are_converted_to_16_khz(tmp_path: Path) -> None:
    source = write_recording(tmp_path / "phone.wav", [tone(300, 1.5, rate=8000)], rate_hz=8000)
    work = tmp_path / "work"
    work.mkdir()
    decoded = decode_recording(source, work, max_duration_s=60)
    assert decoded.source_rate_hz == 8000 and decoded.source_channels == 1
    assert abs(decoded.samples - 1.5 * RATE) <= 32
    assert abs(dominant_hz(track(decoded.tracks[0])) - 300) < 10


def test_copied_channels_and_explicit_request_mix_down(tmp_path: Path) -> None:
    same = tone(500, 1.0)
    source = write_recording(tmp_path / "mono-as-stereo.flac", [same, same])
    work = tmp_path / "a"
    work.mkdir()
    decoded = decode_recording(source, work, max_duration_s=60)
    assert decoded.mixed_down and len(decoded.tracks) == 1
    assert np.array_equal(track(decoded.tracks[0]), same)

    different = write_recording(tmp_path / "call.flac", [tone(440, 1.0), tone(1000, 1.0)])
    work = tmp_path / "b"
    work.mkdir()
    assert len(decode_recording(different, work, max_duration_s=60, separate_channels=False).tracks) == 1
    work = tmp_path / "c"
    work.mkdir()
    assert len(decode_recording(source, work, max_duration_s=60, separate_channels=True).tracks) == 2


def test_bad_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.wav"
    text.write_text("meeting notes, not audio")
    with pytest.raises(UndecodableAudio, match="not a readable audio file") as refused:
        decode_recording(text, tmp_path, max_duration_s=60)
    assert str(tmp_path) not in refused.value.message, "server paths stay out of client messages"

    flac = write_recording(tmp_path / "call.flac", [tone(440, 3.0), tone(880, 3.0)])
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(UndecodableAudio, match="corrupt"):
        decode_recording(truncated, tmp_path, max_duration_s=60)

    with pytest.raises(RecordingTooLarge, match="longer than"):
        decode_recording(flac, tmp_path, max_duration_s=2.0)
