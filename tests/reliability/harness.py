"""Crash-recovery rounds for one worker kind: a real ``python -m convoscope worker <kind>`` process, killed with
SIGKILL at a random point while it works through records produced at a steady pace, then a fresh process that
must finish the job. The scenario (``scenarios.py``) produces the input and counts lost and duplicated items.

Used by ``tests/reliability`` (one kill per test) and ``bench/crash_recovery.py`` (many rounds)."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiokafka import TopicPartition

from convoscope.kafka import create_consumer, read_to_highwater
from convoscope.settings import Settings
from tests.reliability.tally import Tally

__all__ = ["CrashScenario", "RoundResult", "WorkerProcess", "run_round", "skip_earlier_records"]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0
KILL_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 120.0
"""A new member gets a killed one's partitions only after the session timeout (CRASH_SESSION_TIMEOUT_MS here) and
the embedded broker's rebalance; the webhook sender re-sends a killed sender's rows when their lease runs out."""
CRASH_SESSION_TIMEOUT_MS = 3_000
SETTLE_S = 1.5
"""After everything arrived, how long to keep watching for late copies before counting."""
POLL_S = 0.1


class CrashScenario(Protocol):
    """One worker kind's input, progress and final count. ``kind`` is the ``convoscope worker`` argument."""

    kind: str
    ready_line: str
    """A log line the worker prints once its consumers have started."""
    groups: Sequence[tuple[str, Sequence[str]]]
    """(consumer group, input topics) of the worker, fast-forwarded past earlier records before a round."""
    worker_env: dict[str, str]
    pace_s: float
    """Seconds between two produced records: slow enough that the worker is still busy when it is killed."""
    items: int
    """Items the round must end with (known after ``setup``)."""

    async def setup(self) -> None: ...

    async def produce(self, pace_s: float) -> None:
        """Produce the round's input, one record every ``pace_s`` seconds."""

    async def progress(self) -> int:
        """Items processed so far (distinct), as the test can see them."""

    async def caught_up(self) -> bool:
        """Everything processed, nothing left pending."""

    async def count(self) -> Tally: ...

    async def teardown(self) -> None: ...


class WorkerProcess:
    """``python -m convoscope worker <kind>`` with ``KAFKA_BOOTSTRAP`` and ``DATABASE_URL`` set, as the stack
    starts it; stdout and stderr go to ``log_path``."""

    def __init__(self, kind: str, bootstrap: str, database_url: str, log_path: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.kind, self.log_path = kind, log_path
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "KAFKA_BOOTSTRAP": bootstrap,
                    "DATABASE_URL": database_url,
                    # A killed member's partitions move after its session times out: keep that short here.
                    "CONVOSCOPE_KAFKA_SESSION_TIMEOUT_MS": str(CRASH_SESSION_TIMEOUT_MS), **(extra_env or {})}
        self.env.pop("CONVOSCOPE_HEALTH_PORT", None)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "convoscope", "worker", self.kind], cwd=REPO_ROOT, env=self.env,
                stdout=log_file, stderr=subprocess.STDOUT,
            )

    def own_log(self) -> str:
        """What this process (not an earlier one on the same log file) has logged."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log_file:
            log_file.seek(self._log_start)
            return log_file.read().decode(errors="replace")

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.kind} exited with {self.process.returncode}:\n{self.own_log()[-3000:]}")

    async def wait_for_log(self, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.own_log():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {self.kind} never logged {text!r}:\n{self.own_log()[-3000:]}")
            await asyncio.sleep(POLL_S)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean stop leaves the consumer group at once), SIGKILL if that takes too long."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


async def skip_earlier_records(settings: Settings, groups: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Commit each group's offsets at the current end of its input topics, so that the worker reads only the
    round's records, not those earlier tests left on a shared broker. The groups must have no live member."""
    for group, topics in groups:
        consumer = create_consumer(settings, group_id=group)
        await consumer.start()
        try:
            await consumer.topics()
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            async for _ in read_to_highwater(consumer, partitions, what=f"{group} input", timeout_s=60):
                pass
            ends = {tp: await consumer.position(tp) for tp in partitions}
            await consumer.commit(ends)
        finally:
            await consumer.stop()


@dataclass
class RoundResult:
    kind: str
    seed: int
    tally: Tally
    done_at_kill: int
    """Items processed (as seen by the test) when the first worker was killed."""
    recovery_s: float
    """From the kill until everything was processed (or the recovery timeout)."""
    recovered: bool


async def _until(check: Callable[[], Awaitable[bool]], worker: WorkerProcess, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        if await check():
            return True
        await asyncio.sleep(POLL_S)
    return False


async def run_round(scenario: CrashScenario, settings: Settings, seed: int, log_path: Path) -> RoundResult:
    """Start the worker, produce the input, kill -9 the worker once a random share (15-60 %) of the items is
    done plus a random fraction of a second, start a fresh worker, wait until it has caught up, count."""
    rng = random.Random(seed)
    assert settings.kafka_bootstrap
    await scenario.setup()
    await skip_earlier_records(settings, scenario.groups)
    first = WorkerProcess(scenario.kind, settings.kafka_bootstrap, settings.database_url, log_path,
                          scenario.worker_env)
    second = WorkerProcess(scenario.kind, settings.kafka_bootstrap, settings.database_url, log_path,
                           scenario.worker_env)
    producing: asyncio.Task[None] | None = None
    try:
        first.start()
        await first.wait_for_log(scenario.ready_line)
        producing = asyncio.create_task(scenario.produce(scenario.pace_s))
        total = scenario.items
        kill_after = max(1, int(total * rng.uniform(0.15, 0.6)))
        jitter_s = rng.uniform(0.0, 0.3)

        async def reached() -> bool:
            return await scenario.progress() >= kill_after

        if not await _until(reached, first, KILL_TIMEOUT_S):
            raise AssertionError(f"worker {scenario.kind} did only {await scenario.progress()} of {kill_after} "
                                 f"items in {KILL_TIMEOUT_S:.0f} s:\n{first.own_log()[-3000:]}")
        await asyncio.sleep(jitter_s)
        first.kill()
        killed_at = time.monotonic()
        done_at_kill = await scenario.progress()
        log.info("%s: killed after %d of %d items (seed %d)", scenario.kind, done_at_kill, total, seed)
        second.start()
        await producing
        recovered = await _until(scenario.caught_up, second, RECOVERY_TIMEOUT_S)
        recovery_s = time.monotonic() - killed_at
        if recovered:
            await asyncio.sleep(SETTLE_S)
        return RoundResult(scenario.kind, seed, await scenario.count(), done_at_kill, recovery_s, recovered)
    finally:
        if producing is not None and not producing.done():
            producing.cancel()
        for worker in (first, second):
            worker.stop()
        await scenario.teardown()
