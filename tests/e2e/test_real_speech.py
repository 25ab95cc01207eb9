"""Real human speech through the pipeline: LibriVox recordings shipped inside the pocketsphinx 5.1.1 sdist.

The audio is fetched from the package registry at test time (cached in ~/.cache/convoscope/fixtures) and
never committed; the reference texts are the `.txt` files beside each clip in the same package.
The bar (from the issue): the live pipeline's WER within 2 percentage points of decoding the same files
offline with the same model.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from convoscope.evaluation import word_error_rate
from convoscope.settings import Settings
from producers.replay import load_audio_file, stream_pcm
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

FIXTURES = Path.home() / ".cache" / "convoscope" / "fixtures"
SDIST = "pocketsphinx-5.1.1.tar.gz"
CLIPS = [f"sense_and_sensibility_01_austen_64kb-{n}" for n in ("0870", "0880", "0890", "0920", "0930")]
MEMBER_DIR = "pocketsphinx-5.1.1/test/data/librivox"


@pytest.fixture(scope="session")
def librivox() -> list[tuple[Path, str]]:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    archive = FIXTURES / SDIST
    if not archive.exists():
        # Only this package as an sdist: ":all:" would also build its build tools (Cython) from source.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "pocketsphinx",
             "-d", str(FIXTURES), "pocketsphinx==5.1.1"],
            check=True,
        )
    target = FIXTURES / "librivox"
    if not all((target / f"{clip}.wav").exists() for clip in CLIPS):
        target.mkdir(exist_ok=True)
        with tarfile.open(archive) as tar:
            for clip in CLIPS:
                for suffix in (".wav", ".txt"):
                    member = tar.getmember(f"{MEMBER_DIR}/{clip}{suffix}")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    (target / f"{clip}{suffix}").write_bytes(extracted.read())
    return [(target / f"{clip}.wav", (target / f"{clip}.txt").read_text().strip()) for clip in CLIPS]


def _offline_transcripts(paths: list[Path]) -> list[str]:
    from faster_whisper import WhisperModel

    from processors.transcription.asr import model_directory

    settings = Settings()
    model = WhisperModel(str(model_directory(settings.asr_model, settings.model_cache_dir)), device="cpu",
                         compute_type="int8", cpu_threads=2)
    texts = []
    for path in paths:
        segments, _ = model.transcribe(str(path), language="en", beam_size=5)
        texts.append(" ".join(segment.text.strip() for segment in segments))
    return texts


async def test_librivox_through_pipeline_matches_offline_decoding(
    sqlite_stack: RunningStack, librivox: list[tuple[Path, str]]
) -> None:
    references = [text for _, text in librivox]
    # Staggered so the clips do not end together: a queue of finals would switch the worker to greedy decoding.
    start_at = time.monotonic() + 0.5
    results = await asyncio.gather(*[
        stream_pcm(sqlite_stack.ws_url(str(uuid.uuid4())), sqlite_stack.token, load_audio_file(path).tobytes(),
                   speaker={"name": "Reader"}, start_at=start_at + index * 1.2)
        for index, (path, _) in enumerate(librivox)
    ])
    live = [" ".join(m["payload"]["content"] for m in result.final_messages()) for result in results]
    offline = await asyncio.to_thread(_offline_transcripts, [path for path, _ in librivox])
    live_wer = word_error_rate(references, live)
    offline_wer = word_error_rate(references, offline)
    print(f"\nLibriVox ({sum(len(r.split()) for r in references)} words): live WER {live_wer:.1%}, "
          f"offline WER {offline_wer:.1%}")
    assert live_wer <= offline_wer + 0.02, f"live {live}\noffline {offline}"
