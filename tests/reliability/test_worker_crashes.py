"""Kill -9 of each worker kind that needs no speech recognition (store, insights, webhooks) mid-work, on the
embedded broker with real worker processes: after a fresh process catches up, nothing is lost and nothing is
duplicated beyond what the sink allows. One random kill point per test (seeded; the seed is printed, and
CONVOSCOPE_CRASH_SEED replays it); ``bench/crash_recovery.py`` repeats rounds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from convoscope.embedded_broker import EmbeddedBroker
from convoscope.settings import Settings
from tests.reliability.harness import RoundResult, run_round
from tests.reliability.scenarios import SCENARIOS, sqlite_url

pytestmark = pytest.mark.slow


def _seed() -> int:
    return int(os.environ.get("CONVOSCOPE_CRASH_SEED") or random.SystemRandom().randrange(2**32))


async def _crash_round(kind: str, broker: EmbeddedBroker, folder: Path) -> RoundResult:
    seed = _seed()
    print(f"{kind} crash round: seed {seed} (CONVOSCOPE_CRASH_SEED={seed} replays the kill point)")
    settings = Settings(kafka_bootstrap=broker.bootstrap, database_url=sqlite_url(folder, kind))
    scenario = SCENARIOS[kind](settings)
    log_path = folder / f"{kind}-workers.log"
    result = await run_round(scenario, settings, seed, log_path)
    print(f"{kind}: {result}")
    assert result.done_at_kill < scenario.items, "killed after the work was done: nothing tested"
    assert result.recovered, f"{kind} did not catch up after the kill: {result}\n{log_path.read_text()[-3000:]}"
    assert result.tally.lost == 0, result
    assert result.tally.duplicated == 0, result
    assert result.tally.items == scenario.items > 0
    return result


async def test_store_worker_kill_9_loses_and_duplicates_no_row(broker: EmbeddedBroker, tmp_path: Path) -> None:
    await _crash_round("store", broker, tmp_path)


async def test_text_processors_kill_9_publish_every_result_with_the_same_ids(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    # Copies on the topic are allowed only as identical records (counted as redelivered, not duplicated).
    await _crash_round("insights", broker, tmp_path)


async def test_webhook_worker_kill_9_delivers_every_event_at_least_once_with_its_id(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    await _crash_round("webhooks", broker, tmp_path)
