"""The command line as a user types it: `convoscope apps create` and `convoscope stream FILE.wav`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import wave
from pathlib import Path

import pytest

from convoscope.auth import load_token_issuer
from convoscope.db import create_engine, session_factory
from convoscope.evaluation import word_error_rate
from convoscope.settings import Settings
from convoscope.synth import Meeting
from tests.e2e.conftest import RunningStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def _convoscope(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoscope", *args, env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_apps_create_prints_symbl_style_credentials(sqlite_stack: RunningStack, tmp_path: Path) -> None:
    code, out, err = await _convoscope("apps", "create", "--name", "crm", env=sqlite_stack.stack.env, cwd=tmp_path)
    assert code == 0, err
    credentials = json.loads(out)
    assert len(credentials["appId"]) == 64 and len(credentials["appSecret"]) == 128
    code, out, err = await _convoscope("apps", "list", env=sqlite_stack.stack.env, cwd=tmp_path)
    assert code == 0, err
    listed = [json.loads(line) for line in out.splitlines()]
    assert {"appId": credentials["appId"], "name": "crm"}.items() <= next(
        app for app in listed if app["appId"] == credentials["appId"]).items()
    assert all("appSecret" not in app for app in listed), "secrets are never shown again"


async def test_stream_replays_a_wav_file_and_prints_the_transcript(
    sqlite_stack: RunningStack, meeting: Meeting, tmp_path: Path
) -> None:
    # A recording at 44.1 kHz, as a phone app or the SDK would produce; the server resamples.
    import soxr

    samples = soxr.resample(meeting.tracks["Bob"], 16_000, 44_100).astype("<i2")
    path = tmp_path / "bob.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(44_100)
        out.writeframes(samples.tobytes())
    code, out, err = await _convoscope(
        "stream", str(path), "--speaker", "Bob", "--url", sqlite_stack.base_url, "--fast",
        "--app-id", sqlite_stack.app_id, "--app-secret", sqlite_stack.app_secret,
        env=sqlite_stack.stack.env, cwd=tmp_path,
    )
    assert code == 0, err
    committed = [line.split("Bob: ", 1)[1] for line in out.splitlines() if line.startswith("[") and "Bob: " in line]
    said = " ".join(u.text for u in meeting.utterances if u.speaker == "Bob")
    assert word_error_rate([said], [" ".join(committed)]) <= 0.15, out
    assert "/v1/conversations/" in out.splitlines()[-1]


async def test_stream_explains_a_file_that_is_not_audio(sqlite_stack: RunningStack, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("meeting notes, not audio")
    code, _, err = await _convoscope("stream", str(bogus), "--url", sqlite_stack.base_url,
                                     env=sqlite_stack.stack.env, cwd=tmp_path)
    assert code == 2
    assert "not a readable audio file" in err
    code, _, err = await _convoscope("stream", str(tmp_path / "missing.wav"), env=sqlite_stack.stack.env,
                                     cwd=tmp_path)
    assert code == 2 and "no such file" in err


async def test_demo_streams_a_meeting_and_shows_what_was_found(tmp_path: Path) -> None:
    """README's first command: the whole stack on embedded defaults, a meeting streamed live, the results shown."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "DATABASE_URL")}  # embedded defaults
    code, out, err = await _convoscope("demo", env=env, cwd=tmp_path)
    assert code == 0, err[-3000:]
    transcript, _, found = out.partition("What the text processors found")
    assert "[00:0" in transcript and "Bob: " in transcript and "Alice: " in transcript  # committed final lines
    assert "convoscope.db" in os.listdir(tmp_path)
    action_items = found.split("Action items:")[1].split("Topics:")[0]
    assert "test report" in action_items and "owner Bob" in action_items, found
    assert "payment" in found.split("Topics:")[1].split("Summary:")[0], found
    assert found.split("Summary:")[1].strip().startswith("- "), found
    # The printed page link is signed with the key kept in the demo's database: `convoscope up` will open it.
    link = re.search(r"/conversations/(\d+)\?token=(\S+)", found)
    assert link, found
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/convoscope.db")
    engine = create_engine(settings)
    try:
        issuer = await load_token_issuer(settings, session_factory(engine))
    finally:
        await engine.dispose()
    assert issuer.verify_view_token(link.group(2), link.group(1))
