"""Kill -9 of a gateway replica while a client streams, at random points, repeated (~25 s per round).

One stack (embedded broker, SQLite, workers, gateway A). Each round starts gateway B as its own process (stream
lease 3 s), streams three spoken lines to it in real time, SIGKILLs it at a random moment of the speech, and then,
in every other round, reconnects the client to the same connectionId on gateway A and speaks the rest. It counts,
once the conversation is completed: lines wholly spoken (and past the gateway by a margin) before the kill that are
not stored (lost), lines stored twice (duplicated), and how long after the kill the conversation completed. Lost
and duplicated must be 0.

    .venv/bin/python bench/gateway_kill.py [--rounds 6] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convoscope.embedded_broker import free_port  # noqa: E402
from convoscope.settings import Settings  # noqa: E402
from convoscope.stack import Stack  # noqa: E402
from convoscope.synth import SAMPLE_RATE_HZ, speak  # noqa: E402
from producers.replay import fetch_token  # noqa: E402
from tests.e2e.live_client import live_client, occurrences  # noqa: E402

LINES = (
    "The blue invoice arrives on Monday morning.",
    "Please call the warehouse before noon tomorrow.",
    "Our driver will collect the boxes at the gate.",
)
PAUSE_S = 1.2
LEASE_S = 3
ACCEPTED_MARGIN_S = 0.5
"""A line counts as accepted when it ended this long before the kill (the gateway had read and published it)."""


@dataclass
class Round:
    kill_at_s: float
    reconnected: bool
    expected: int
    lost: int
    duplicated: int
    completed_after_s: float


def _script() -> tuple[bytes, list[tuple[float, float]]]:
    clips, spans, at = [], [], 0.0
    for line in LINES:
        pcm = speak(line, "en-us+m3")
        spans.append((at, at + len(pcm) / SAMPLE_RATE_HZ))
        clips += [pcm, np.zeros(int(PAUSE_S * SAMPLE_RATE_HZ), dtype=np.int16)]
        at = spans[-1][1] + PAUSE_S
    return np.concatenate(clips).astype("<i2").tobytes(), spans


async def _gateway(stack: Stack) -> tuple[str, asyncio.subprocess.Process]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convoscope", "gateway",
        env={**stack.env, "CONVOSCOPE_PORT": str(port), "CONVOSCOPE_STREAM_LEASE_S": str(LEASE_S)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(url + "/healthz")).status_code == 200:
                    return url, process
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("gateway B did not start")


async def _completed(api: httpx.AsyncClient, conversation_id: str, timeout_s: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        conversation = await api.get(f"/v1/conversations/{conversation_id}")
        if conversation.status_code == 200 and conversation.json().get("endTime") is not None:
            await asyncio.sleep(3)  # the store applies the last finals and the completion in either order
            messages = (await api.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
            return [m["text"] for m in messages]
        await asyncio.sleep(0.5)
    raise RuntimeError(f"conversation {conversation_id} never completed")


async def one_round(stack: Stack, token: str, rng: random.Random, reconnect: bool) -> Round:
    pcm, spans = _script()
    total_s = len(pcm) / 2 / SAMPLE_RATE_HZ
    kill_at_s = rng.uniform(1.0, total_s - 0.5)
    cut = int(kill_at_s * SAMPLE_RATE_HZ) * 2
    connection_id = str(uuid.uuid4())
    url, process = await _gateway(stack)
    ws_b = url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
    async with live_client(ws_b, token, no_connection_timeout_s=60 if reconnect else 0) as client:
        conversation_id = str(client.of_type("recognition_started")[0]["message"]["data"]["conversationId"])
        await client.speak(pcm[:cut])
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
    await process.wait()
    if reconnect:
        ws_a = stack.settings.base_url().replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        async with live_client(ws_a, token) as client:
            await client.speak(pcm[cut:])
            await client.ws.send(json.dumps({"type": "stop_request"}))
            await client.wait_for(lambda: bool(client.of_type("conversation_completed")), 60, "no completion")
    async with httpx.AsyncClient(base_url=stack.settings.base_url(), headers={"x-api-key": token},
                                 timeout=15) as api:
        texts = await _completed(api, conversation_id)
    completed_after_s = time.monotonic() - killed
    stored = [{"text": text} for text in texts]
    # Expected once: lines wholly past gateway B before the kill, and (after a reconnect) lines wholly sent to A.
    # A line cut by the kill may be stored in part, or in two parts, but never twice whole.
    expected = [line for line, (start, end) in zip(LINES, spans, strict=True)
                if end <= kill_at_s - ACCEPTED_MARGIN_S or (reconnect and start >= kill_at_s)]
    lost = sum(1 for line in expected if occurrences(stored, line) == 0)
    duplicated = sum(max(0, occurrences(stored, line) - 1) for line in LINES)
    return Round(kill_at_s, reconnect, len(expected), lost, duplicated, completed_after_s)


async def main(rounds: int, seed: int) -> int:
    rng = random.Random(seed)
    print(f"seed {seed}; {rounds} rounds; lines end at", ", ".join(f"{end:.1f} s" for _, end in _script()[1]))
    with tempfile.TemporaryDirectory(prefix="gateway-kill-") as state:
        settings = Settings(port=free_port(), state_dir=Path(state), database_url=f"sqlite+aiosqlite:///{state}/b.db")
        async with Stack(settings, quiet_children=True) as stack:
            token = await fetch_token(stack.settings.base_url(), *await stack.app_credentials("bench"))
            results = []
            for index in range(rounds):
                result = await one_round(stack, token, rng, reconnect=index % 2 == 1)
                results.append(result)
                print(f"round {index + 1}: killed at {result.kill_at_s:5.2f} s, "
                      f"{'reconnected' if result.reconnected else 'no reconnect'}: {result.expected} lines "
                      f"expected, {result.lost} lost, {result.duplicated} duplicated, completed "
                      f"{result.completed_after_s:.1f} s after the kill")
    lost = sum(r.lost for r in results)
    duplicated = sum(r.duplicated for r in results)
    completions = [r.completed_after_s for r in results]
    print(f"\n{rounds} rounds: {sum(r.expected for r in results)} lines expected (accepted before the kill, or "
          f"sent after a reconnect), {lost} lost, {duplicated} duplicated; conversation completed "
          f"{statistics.median(completions):.1f} s (median) / {max(completions):.1f} s (max) after the kill")
    return 1 if lost or duplicated else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.rounds, arguments.seed)))
