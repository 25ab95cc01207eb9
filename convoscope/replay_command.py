"""`convoscope replay PATH...` and `convoscope reprocess`: recordings through a running server, with progress.

replay submits every audio file (folders are searched recursively) through the Async API, ``--concurrency`` at a
time, shows a progress bar per file (upload, then transcription) and one overall, prints a line per file as it
finishes and a table at the end. ``--realtime`` instead streams each file over the WebSocket API at real-time
pace (one connection per channel, as a live call would), for load tests.

reprocess asks the server to re-transcribe stored conversations (still on the audio topic) with the model its
workers run now, then follows the new jobs the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from producers.replay.async_api import AsyncApiClient, AsyncApiError
from producers.replay.client import StreamError, stream_pcm

__all__ = ["AUDIO_EXTENSIONS", "find_recordings", "parse_since", "run_replay", "run_reprocess"]

AUDIO_EXTENSIONS = frozenset({".wav", ".wave", ".mp3", ".flac", ".ogg", ".opus", ".oga", ".m4a", ".mp4", ".aac",
                              ".webm", ".mka", ".wma", ".aiff", ".aif"})
TokenSource = Callable[[], Awaitable[str]]
RELATIVE_TIME = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def find_recordings(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Audio files among ``paths`` (folders searched recursively, in name order) and the paths not found."""
    found: list[Path] = []
    missing: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        elif path.is_file():
            found.append(path)
        else:
            missing.append(name)
    return list(dict.fromkeys(found)), missing


def parse_since(text: str, now: datetime | None = None) -> str:
    """``2h``, ``30m``, ``1d`` ago, or an ISO-8601 time → ISO-8601 UTC."""
    now = now or datetime.now(UTC)
    relative = RELATIVE_TIME.match(text.strip())
    if relative:
        moment = now - timedelta(seconds=float(relative.group(1)) * UNIT_SECONDS[relative.group(2)])
    else:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


@dataclass
class Outcome:
    label: str
    ok: bool
    detail: str = ""
    conversation_id: str | None = None
    job_id: str | None = None
    messages: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0

    def line(self) -> str:
        if not self.ok:
            return f"FAILED  {self.label}: {self.detail}"
        speed = self.audio_s / self.wall_s if self.wall_s else 0.0
        job = f" job={self.job_id}" if self.job_id else ""
        return (f"OK      {self.label}: conversation={self.conversation_id}{job} messages={self.messages} "
                f"audio={self.audio_s:.1f}s wall={self.wall_s:.1f}s ({speed:.1f}x)")


class Board:
    """Progress bars (only on a terminal), result lines and the final table."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[phase]}"),
            TimeElapsedColumn(), console=console, disable=not console.is_terminal,
        )
        self.overall = self.progress.add_task("all files", total=total, phase="")
        self.outcomes: list[Outcome] = []

    def __enter__(self) -> Board:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def add(self, label: str, total: float, phase: str) -> TaskID:
        return self.progress.add_task(label, total=total, phase=phase)

    def finish(self, task: TaskID, outcome: Outcome) -> None:
        self.progress.remove_task(task)
        self.progress.advance(self.overall)
        self.outcomes.append(outcome)
        self.console.print(outcome.line(), soft_wrap=True, highlight=False, markup=False)

    def table(self, title: str) -> None:
        table = Table(title=title)
        table.add_column("file", overflow="fold")
        table.add_column("result", overflow="ellipsis", max_width=48)
        table.add_column("conversation", no_wrap=True)
        for column in ("messages", "audio s", "wall s", "speed"):
            table.add_column(column, justify="right", no_wrap=True)
        for o in self.outcomes:
            speed = f"{o.audio_s / o.wall_s:.1f}x" if o.ok and o.wall_s else ""
            table.add_row(o.label, "ok" if o.ok else o.detail, o.conversation_id or "", str(o.messages) if o.ok else "",
                          f"{o.audio_s:.1f}", f"{o.wall_s:.1f}", speed)
        self.console.print(table)
        done = [o for o in self.outcomes if o.ok]
        audio = sum(o.audio_s for o in done)
        self.console.print(f"{len(done)} of {len(self.outcomes)} succeeded; {audio:.1f} s of audio", highlight=False)


async def _follow_job(client: AsyncApiClient, board: Board, task: TaskID, job_id: str) -> dict[str, Any]:
    def show(job: dict[str, Any]) -> None:
        board.progress.update(task, total=max(job.get("audioDuration") or 0.0, 0.001),
                              completed=job.get("transcribedDuration") or 0.0, phase=job["status"])

    return await client.wait_job(job_id, on_update=show)


async def _submit(client: AsyncApiClient, board: Board, path: Path, label: str, params: dict[str, str]) -> Outcome:
    started = time.monotonic()
    size = await asyncio.to_thread(os.path.getsize, path)
    task = board.add(label, total=max(size, 1), phase="uploading")
    try:
        accepted = await client.submit_file(path, params, on_sent=lambda n: board.progress.advance(task, n))
        job = await _follow_job(client, board, task, accepted["jobId"])
        messages = await client.messages(accepted["conversationId"]) if job["status"] == "completed" else []
    except AsyncApiError as exc:
        outcome = Outcome(label, False, exc.message, wall_s=time.monotonic() - started)
    except httpx.HTTPError as exc:
        outcome = Outcome(label, False, f"{type(exc).__name__}: {exc}", wall_s=time.monotonic() - started)
    else:
        ok = job["status"] == "completed"
        outcome = Outcome(label, ok, "" if ok else f"job failed: {job.get('error', '')}", accepted["conversationId"],
                          accepted["jobId"], len(messages), float(job.get("audioDuration") or 0.0),
                          time.monotonic() - started)
    board.finish(task, outcome)
    return outcome


async def _stream_realtime(base_url: str, token: str, board: Board, path: Path, label: str) -> Outcome:
    """The file as a live call: one WebSocket connection per channel, all on one clock, at real-time pace."""
    from producers.recorded.decode import decode_recording
    from producers.recorded.exceptions import RecordedAudioError

    started = time.monotonic()
    task = board.add(label, total=1, phase="decoding")
    with tempfile.TemporaryDirectory(prefix="convoscope-replay-") as directory:
        try:
            decoded = await asyncio.to_thread(decode_recording, path, Path(directory), max_duration_s=24 * 3600)
        except RecordedAudioError as exc:
            outcome = Outcome(label, False, exc.message)
            board.finish(task, outcome)
            return outcome
        board.progress.update(task, total=decoded.duration_s, phase="streaming")
        connection_id = str(uuid.uuid4())
        ws_url = base_url.replace("http", "ws", 1) + f"/v1/streaming/{connection_id}"
        tracks = [await asyncio.to_thread(track.read_bytes) for track in decoded.tracks]
        request = {"config": {"meetingTitle": path.name,
                              "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16_000}}}
        start_at = time.monotonic() + 0.5

        async def tick() -> None:
            while True:
                board.progress.update(task, completed=min(decoded.duration_s, max(0.0, time.monotonic() - start_at)))
                await asyncio.sleep(0.25)

        ticker = asyncio.create_task(tick())
        try:
            results = await asyncio.gather(*[
                stream_pcm(ws_url, token, pcm, speaker={"name": f"Speaker {index}"}, start_request=request,
                           start_at=start_at)
                for index, pcm in enumerate(tracks, start=1)
            ])
        except (StreamError, OSError) as exc:
            outcome = Outcome(label, False, f"{type(exc).__name__}: {exc}", wall_s=time.monotonic() - started)
        else:
            finals = {m["id"] for result in results for m in result.final_messages()}
            outcome = Outcome(label, True, "", results[0].conversation_id, None, len(finals), decoded.duration_s,
                              time.monotonic() - started)
        finally:
            ticker.cancel()
    board.finish(task, outcome)
    return outcome


def _console() -> Console:
    console = Console()
    # Piped to a file or another program: room for the table instead of the 80-column default.
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _labels(files: Sequence[Path]) -> list[str]:
    """Short names: paths relative to the current directory when below it."""
    cwd = Path.cwd()
    return [str(f.resolve().relative_to(cwd)) if f.resolve().is_relative_to(cwd) else str(f) for f in files]


async def run_replay(args: argparse.Namespace, base_url: str, token_source: TokenSource) -> int:
    console = _console()
    files, missing = find_recordings(args.paths)
    for name in missing:
        console.print(f"FAILED  {name}: no such file or folder", highlight=False, markup=False)
    if not files:
        console.print("no audio files found", highlight=False)
        return 2
    token = await token_source()
    params: dict[str, str] = {}
    if args.webhook_url:
        params["webhookUrl"] = args.webhook_url
    slots = asyncio.Semaphore(max(1, args.concurrency))
    started = time.monotonic()
    with Board(console, len(files)) as board:
        async with AsyncApiClient(base_url, token) as client:

            async def one(path: Path, label: str) -> Outcome:
                async with slots:
                    if args.realtime:
                        return await _stream_realtime(base_url, token, board, path, label)
                    return await _submit(client, board, path, label, {**params, "name": path.name})

            outcomes = await asyncio.gather(*[one(f, label) for f, label in zip(files, _labels(files), strict=True)])
    wall = time.monotonic() - started
    board.table("convoscope replay" + (" (real time)" if args.realtime else ""))
    audio = sum(o.audio_s for o in outcomes if o.ok)
    console.print(f"wall time {wall:.1f} s; {audio / wall if wall else 0:.1f}x real time overall", highlight=False)
    return 0 if all(o.ok for o in outcomes) and not missing else 1


async def run_reprocess(args: argparse.Namespace, base_url: str, token_source: TokenSource) -> int:
    console = _console()
    body: dict[str, Any] = (
        {"conversationIds": list(args.conversation)} if args.conversation else {"since": parse_since(args.since)}
    )
    token = await token_source()
    async with AsyncApiClient(base_url, token) as client:
        try:
            answer = await client.reprocess(body)
        except AsyncApiError as exc:
            console.print(f"error: {exc.message}", highlight=False, markup=False)
            return 1
        for skipped in answer["skipped"]:
            console.print(f"SKIPPED {skipped['conversationId']}: {skipped['reason']}", highlight=False, markup=False)
        for job in answer["jobs"]:
            console.print(f"QUEUED  {job['sourceConversationId']} -> conversation {job['conversationId']} "
                          f"(job {job['jobId']})", highlight=False, markup=False)
        if args.no_wait or not answer["jobs"]:
            return 1 if answer["skipped"] else 0
        with Board(console, len(answer["jobs"])) as board:

            async def follow(job: dict[str, Any]) -> Outcome:
                started = time.monotonic()
                label = f"{job['sourceConversationId']} -> {job['conversationId']}"
                task = board.add(label, total=1, phase="scheduled")
                final = await _follow_job(client, board, task, job["jobId"])
                ok = final["status"] == "completed"
                messages = await client.messages(job["conversationId"]) if ok else []
                outcome = Outcome(label, ok, final.get("error", ""), job["conversationId"], job["jobId"],
                                  len(messages), float(final.get("audioDuration") or 0.0), time.monotonic() - started)
                board.finish(task, outcome)
                return outcome

            outcomes = await asyncio.gather(*[follow(job) for job in answer["jobs"]])
        board.table("convoscope reprocess")
    return 0 if all(o.ok for o in outcomes) and not answer["skipped"] else 1
