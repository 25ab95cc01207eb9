"""Recorded audio files → the pipeline's format (16 kHz s16le mono), one track per member, spooled to disk.

PyAV (FFmpeg) reads WAV, MP3, FLAC, Ogg/Opus, M4A/AAC and most else. The whole file is decoded before anything
is published, so a file that turns out corrupt half-way is refused as a whole. Tracks go to files, not memory:
an hour of 16 kHz audio is 115 MB per channel.

A multi-channel recording (a call recorder's stereo file: one party per channel) becomes one track per channel,
unless the client said ``enableSeparateRecognitionPerChannel=false`` or the channels are copies of each other (a
mono recording saved as stereo), which are mixed down to one track.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from producers.audio import PIPELINE_SAMPLE_RATE_HZ
from producers.recorded.exceptions import RecordingTooLarge, UndecodableAudio

__all__ = ["MAX_CHANNELS", "DecodedRecording", "decode_recording", "read_pcm_chunks"]

MAX_CHANNELS = 8
SAMPLE_BYTES = 2
COPIED_CHANNELS_RATIO = 1e-3
"""Energy of the difference between channels over their energy below which they count as copies."""
MIX_CHUNK_SAMPLES = 1 << 16


@dataclass(frozen=True)
class DecodedRecording:
    """Tracks of equal length as raw 16 kHz s16le files: one per channel, or one mix-down."""

    tracks: tuple[Path, ...]
    samples: int
    source_channels: int
    source_rate_hz: int
    codec: str
    mixed_down: bool

    @property
    def duration_s(self) -> float:
        return self.samples / PIPELINE_SAMPLE_RATE_HZ

    @property
    def duration_ms(self) -> int:
        return self.samples * 1000 // PIPELINE_SAMPLE_RATE_HZ


def read_pcm_chunks(path: Path, chunk_samples: int) -> Iterator[bytes]:
    """The track's bytes in chunks of ``chunk_samples`` samples (the last one shorter)."""
    with path.open("rb") as track:
        while chunk := track.read(chunk_samples * SAMPLE_BYTES):
            yield chunk


class _ChannelWriter:
    """Appends planar int16 frames to one file per channel and measures whether the channels differ."""

    def __init__(self, workdir: Path, channels: int, max_samples: int) -> None:
        self.paths = tuple(workdir / f"channel-{index + 1}.s16" for index in range(channels))
        self._files = [path.open("wb") for path in self.paths]
        self.samples = 0
        self._max_samples = max_samples
        self.energy = 0.0
        self.difference = 0.0

    def write(self, planes: np.ndarray) -> None:
        if planes.shape[0] != len(self._files):
            raise UndecodableAudio("the number of channels changes within the file")
        self.samples += planes.shape[1]
        if self.samples > self._max_samples:
            limit_s = self._max_samples / PIPELINE_SAMPLE_RATE_HZ
            raise RecordingTooLarge(f"the recording is longer than the {limit_s:.0f} s limit")
        if len(self._files) > 1:
            wide = planes.astype(np.float64)
            self.energy += float(np.square(wide).sum())
            self.difference += float(np.square(wide[1:] - wide[0]).sum())
        for channel, file in zip(planes, self._files, strict=True):
            file.write(np.ascontiguousarray(channel, dtype="<i2").tobytes())

    @property
    def channels_are_copies(self) -> bool:
        return self.energy > 0 and self.difference <= COPIED_CHANNELS_RATIO * self.energy

    def close(self) -> None:
        for file in self._files:
            file.close()


def _describe(exc: Exception) -> str:
    """FFmpeg's reason without the server-side file name."""
    return str(getattr(exc, "strerror", None) or exc)


def _mix_down(paths: tuple[Path, ...], destination: Path) -> None:
    readers = [read_pcm_chunks(path, MIX_CHUNK_SAMPLES) for path in paths]
    with destination.open("wb") as out:
        for chunks in zip(*readers, strict=True):
            planes = np.stack([np.frombuffer(chunk, dtype="<i2").astype(np.int32) for chunk in chunks])
            out.write((planes.sum(axis=0) // len(paths)).astype("<i2").tobytes())


def decode_recording(
    source: Path, workdir: Path, *, max_duration_s: float, separate_channels: bool | None = None
) -> DecodedRecording:
    """Decode ``source`` into track files in ``workdir``. Raises ``UndecodableAudio`` or ``RecordingTooLarge``.

    ``separate_channels``: True splits channels even when they are copies, False always mixes down, None
    (not given) splits unless they are copies.
    """
    max_samples = int(max_duration_s * PIPELINE_SAMPLE_RATE_HZ)
    try:
        container = av.open(str(source), mode="r")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise UndecodableAudio(f"not a readable audio file ({_describe(exc)})") from exc
    writer: _ChannelWriter | None = None
    try:
        if not container.streams.audio:
            raise UndecodableAudio("the file contains no audio stream")
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        source_rate = int(stream.codec_context.sample_rate or 0)
        resampler = av.AudioResampler(format="s16p", rate=PIPELINE_SAMPLE_RATE_HZ)
        decoded_s = 0.0
        try:
            for frame in container.decode(stream):
                decoded_s = float(frame.time or decoded_s)
                for out in resampler.resample(frame):
                    planes = out.to_ndarray()
                    if writer is None:
                        channels = planes.shape[0]
                        if not 1 <= channels <= MAX_CHANNELS:
                            raise UndecodableAudio(f"{channels} channels; at most {MAX_CHANNELS} are supported")
                        writer = _ChannelWriter(workdir, channels, max_samples)
                    writer.write(planes)
            for out in resampler.resample(None):
                if writer is not None:
                    writer.write(out.to_ndarray())
        except (av.FFmpegError, ValueError) as exc:
            raise UndecodableAudio(f"the audio is corrupt near {decoded_s:.1f} s ({_describe(exc)})") from exc
    finally:
        container.close()
        if writer is not None:
            writer.close()
    if writer is None or writer.samples == 0:
        raise UndecodableAudio("the file contains no audio")
    channels = len(writer.paths)
    mix = channels > 1 and (separate_channels is False or (separate_channels is None and writer.channels_are_copies))
    tracks = writer.paths
    if mix:
        mixed = workdir / "mix.s16"
        _mix_down(writer.paths, mixed)
        for path in writer.paths:
            path.unlink()
        tracks = (mixed,)
    return DecodedRecording(
        tracks=tracks,
        samples=writer.samples,
        source_channels=channels,
        source_rate_hz=source_rate,
        codec=codec,
        mixed_down=mix,
    )
