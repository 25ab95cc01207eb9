"""Crash recovery of the workers: kill -9 at random points, repeated (~35 s per round).

Each round (``tests/reliability/harness.py``) starts a real ``convoscope worker <kind>`` process on an embedded
broker, produces synthetic records at a steady pace, SIGKILLs the worker once a random share of the items is
done, starts a fresh one, waits until it has caught up, and counts. Prints per worker kind: rounds, items, lost,
duplicated, and copies the sink allows (same id and content: webhooks delivered more than once, text-processor
records published again). Lost and duplicated must be 0.

    .venv/bin/python bench/crash_recovery.py [--rounds 3] [--workers store insights webhooks] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convoscope.embedded_broker import EmbeddedBroker  # noqa: E402
from convoscope.kafka import ensure_topics  # noqa: E402
from convoscope.settings import Settings  # noqa: E402
from schemas.topics import ALL_TOPICS  # noqa: E402
from tests.reliability.harness import RoundResult, run_round  # noqa: E402
from tests.reliability.scenarios import SCENARIOS, sqlite_url  # noqa: E402
from tests.reliability.tally import Tally  # noqa: E402

ALLOWED_COPIES = {"store": "-", "insights": "re-published, same ids", "webhooks": "delivered again, same id"}


async def main(rounds: int, kinds: list[str], seed: int) -> int:
    rng = random.Random(seed)
    results: dict[str, list[RoundResult]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="crash-recovery-") as folder_name:
        folder = Path(folder_name)
        with EmbeddedBroker(log_path=folder / "tansu.log") as broker:
            await ensure_topics(Settings(kafka_bootstrap=broker.bootstrap), ALL_TOPICS)
            for kind in kinds:
                for index in range(rounds):
                    round_seed = rng.randrange(2**32)
                    settings = Settings(kafka_bootstrap=broker.bootstrap,
                                        database_url=sqlite_url(folder, f"{kind}-{index}"))
                    result = await run_round(SCENARIOS[kind](settings), settings, round_seed,
                                             folder / f"{kind}-{index}.log")
                    results[kind].append(result)
                    t = result.tally
                    print(f"  {kind} round {index + 1}: seed {round_seed}, killed after {result.done_at_kill}/"
                          f"{t.items} items, caught up {'in' if result.recovered else 'NOT within'} "
                          f"{result.recovery_s:.1f} s; lost {t.lost} {t.lost_ids}, duplicated {t.duplicated} "
                          f"{t.duplicated_ids}, allowed copies {t.redelivered}", flush=True)
    print(f"\nseed {seed}")
    print(f"{'worker':<10}{'rounds':>7}{'items':>8}{'lost':>6}{'dup':>5}{'copies':>8}  allowed copies are"
          f"{'':>4}{'recovery s (max)':>18}")
    failed = False
    for kind, done in results.items():
        total = Tally()
        for result in done:
            total = total.add(result.tally)
        failed |= total.lost > 0 or total.duplicated > 0 or not all(r.recovered for r in done)
        slowest = max((r.recovery_s for r in done), default=0.0)
        print(f"{kind:<10}{len(done):>7}{total.items:>8}{total.lost:>6}{total.duplicated:>5}{total.redelivered:>8}"
              f"  {ALLOWED_COPIES[kind]:<26}{slowest:>12.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="kills per worker kind (default 3)")
    parser.add_argument("--workers", nargs="+", choices=sorted(SCENARIOS), default=["store", "insights", "webhooks"])
    parser.add_argument("--seed", type=int, default=None, help="replays the kill points of an earlier run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    chosen_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    sys.exit(asyncio.run(main(args.rounds, args.workers, chosen_seed)))
