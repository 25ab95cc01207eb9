"""`convoscope replay` on a folder, `--realtime`, and `convoscope reprocess`, as a user runs them."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from convoscope.evaluation import word_error_rate
from convoscope.synth import SynthesisUnavailable, speak
from tests.e2e.conftest import RunningStack
from tests.recorded.audio_files import write_recording

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RATE = 16_000
ALICE = "Good morning everyone. Today we will go over the launch plan."
BOB = "Thanks Alice. The new pricing page is ready."
RESULT = re.compile(r"^(OK|FAILED)\s+(\S+): (.*)$")


@pytest.fixture(scope="module")
def voices() -> tuple[np.ndarray, np.ndarray]:
    try:
        return speak(ALICE, "en-gb+f4"), speak(BOB, "en-us+m3")
    except SynthesisUnavailable as exc:
        pytest.fail(f"speech synthesis is required: {exc}")


def padded(*parts: np.ndarray | float) -> np.ndarray:
    pieces = [np.zeros(int(p * RATE), np.int16) if isinstance(p, float) else p for p in parts]
    return np.concatenate(pieces)


async def convoscope(stack: RunningStack, *args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoscope", *args, "--url", stack.base_url,
        "--app-id", stack.app_id, "--app-secret", stack.app_secret,
        env=stack.stack.env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 600)
    return int(process.returncode or 0), out.decode(), err.decode()


def results(out: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in out.splitlines():
        match = RESULT.match(line)
        if match:
            found[match.group(2)] = (match.group(1), match.group(3))
    return found


def field(detail: str, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", detail)
    assert match, f"no {name} in {detail!r}"
    return match.group(1)


async def test_replay_a_folder_then_reprocess_a_conversation(
    sqlite_stack: RunningStack, voices: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    alice, bob = voices
    folder = tmp_path / "calls"
    (folder / "week1").mkdir(parents=True)
    write_recording(folder / "alice.wav", [padded(0.3, alice, 0.6)])
    left = padded(0.3, alice, 0.8, np.zeros_like(bob), 0.6)
    right = padded(0.3, np.zeros_like(alice), 0.8, bob, 0.6)
    write_recording(folder / "week1" / "call.flac", [left, right])
    (folder / "week1" / "broken.mp3").write_text("not really an mp3")
    (folder / "notes.txt").write_text("ignored: not audio")

    code, out, err = await convoscope(sqlite_stack, "replay", "calls", "--concurrency", "2", cwd=tmp_path)
    found = results(out)
    assert code == 1, "one file failed, so the command reports failure\n" + out + err
    assert set(found) == {"calls/alice.wav", "calls/week1/call.flac", "calls/week1/broken.mp3"}, out
    assert found["calls/week1/broken.mp3"][0] == "FAILED"
    assert "not a readable audio file" in found["calls/week1/broken.mp3"][1]
    assert "2 of 3 succeeded" in out, out

    headers = {"x-api-key": sqlite_stack.token}
    async with httpx.AsyncClient(base_url=sqlite_stack.base_url, headers=headers, timeout=60) as client:
        status, detail = found["calls/week1/call.flac"]
        assert status == "OK" and int(field(detail, "messages")) >= 2, detail
        call_id = field(detail, "conversation")
        members = (await client.get(f"/v1/conversations/{call_id}/members")).json()["members"]
        assert sorted(m["name"] for m in members) == ["Speaker 1", "Speaker 2"]

        status, detail = found["calls/alice.wav"]
        assert status == "OK", detail
        original_id = field(detail, "conversation")
        original = (await client.get(f"/v1/conversations/{original_id}/messages")).json()["messages"]
        assert word_error_rate([ALICE], [" ".join(m["text"] for m in original)]) <= 0.2, original

        code, out, err = await convoscope(sqlite_stack, "reprocess", "--conversation", original_id, cwd=tmp_path)
        assert code == 0, out + err
        queued = re.search(rf"QUEUED\s+{original_id} -> conversation (\d+)", out)
        assert queued, out
        version_id = queued.group(1)
        assert version_id != original_id
        version = (await client.get(f"/v1/conversations/{version_id}/messages")).json()["messages"]
        assert [m["text"] for m in version] == [m["text"] for m in original], "same audio, same model"
        assert [m["startTime"] for m in version] == [m["startTime"] for m in original], "same timeline"
        assert [m["from"]["id"] for m in version] == [m["from"]["id"] for m in original], "same members"
        assert (await client.get(f"/v1/conversations/{version_id}")).json()["metadata"]["reprocessOf"] == original_id
        linked = (await client.get(f"/v1/conversations/{original_id}")).json()
        assert linked["metadata"]["reprocessedAs"] == version_id, "the old results stay, pointing at the new"
        assert len((await client.get(f"/v1/conversations/{original_id}/messages")).json()["messages"]) == len(original)

        code, out, _ = await convoscope(sqlite_stack, "reprocess", "--conversation", "123456789012345678",
                                        cwd=tmp_path)
        assert code == 1 and "SKIPPED 123456789012345678" in out, out


async def test_replay_in_real_time_streams_like_a_live_call(
    sqlite_stack: RunningStack, voices: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    _, bob = voices
    path = write_recording(tmp_path / "live.wav", [padded(0.2, bob, 0.6)])
    started = asyncio.get_running_loop().time()
    code, out, err = await convoscope(sqlite_stack, "replay", str(path), "--realtime", cwd=tmp_path)
    elapsed = asyncio.get_running_loop().time() - started
    assert code == 0, out + err
    (status, detail), = results(out).values()
    assert status == "OK", detail
    assert elapsed >= len(bob) / RATE, "real-time pace: no faster than the audio lasts"
    async with httpx.AsyncClient(base_url=sqlite_stack.base_url, headers={"x-api-key": sqlite_stack.token}) as client:
        messages = (await client.get(f"/v1/conversations/{field(detail, 'conversation')}/messages")).json()
    assert word_error_rate([BOB], [" ".join(m["text"] for m in messages["messages"])]) <= 0.25, messages
