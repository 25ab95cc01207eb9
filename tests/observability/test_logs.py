"""Structured logs: what an operator's log pipeline receives from `convoscope` processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from convoscope.logs import JsonFormatter, bind_log_context, log_context


def _format(record_logger: logging.Logger, message: str, *args: object, **kwargs: object) -> dict[str, object]:
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Keep()
    record_logger.addHandler(handler)
    try:
        record_logger.warning(message, *args, **kwargs)  # type: ignore[arg-type]
    finally:
        record_logger.removeHandler(handler)
    return json.loads(JsonFormatter().format(captured[-1]))


def test_a_json_line_has_the_fields_and_the_context_of_the_call() -> None:
    logger = logging.getLogger("convoscope.test")
    with log_context(conversation_id="6209486284390400", connection_id="c-1"):
        line = _format(logger, "stream %s ended", "s1")
    assert line["message"] == "stream s1 ended"
    assert line["level"] == "WARNING" and line["logger"] == "convoscope.test"
    assert line["conversation_id"] == "6209486284390400" and line["connection_id"] == "c-1"
    assert str(line["time"]).endswith("+00:00")
    assert "conversation_id" not in _format(logger, "outside the call")


async def test_context_stays_with_its_own_task() -> None:
    """Two connections served concurrently never see each other's ids."""
    logger = logging.getLogger("convoscope.test")
    seen: dict[str, object] = {}

    async def connection(connection_id: str) -> None:
        bind_log_context(connection_id=connection_id)
        await asyncio.sleep(0.01)
        seen[connection_id] = _format(logger, "frame")["connection_id"]

    await asyncio.gather(asyncio.create_task(connection("a")), asyncio.create_task(connection("b")))
    assert seen == {"a": "a", "b": "b"}


def test_exceptions_are_one_json_line() -> None:
    logger = logging.getLogger("convoscope.test")
    try:
        raise ValueError("bad frame")
    except ValueError:
        line = _format(logger, "failed", exc_info=True)
    assert "ValueError: bad frame" in str(line["exception"])


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown log context"), log_context(conversation="x"):
        pass


def test_a_worker_logs_json_lines_when_asked(tmp_path: Path) -> None:
    """`convoscope worker store` with CONVOSCOPE_LOG_FORMAT=json and no Kafka: every line it logs is JSON."""
    env = {**os.environ, "CONVOSCOPE_LOG_FORMAT": "json", "KAFKA_BOOTSTRAP": "127.0.0.1:9",
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/logs.db"}
    env.pop("CONVOSCOPE_HEALTH_PORT", None)
    process = subprocess.Popen([sys.executable, "-m", "convoscope", "worker", "store"], stderr=subprocess.PIPE,
                               text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()  # type: ignore
    entries = []
    try:
        deadline = time.monotonic() + 120
        while not any(e["logger"] == "sinks.store.worker" for e in entries):
            entries.append(json.loads(lines.get(timeout=max(0.1, deadline - time.monotonic()))))
    finally:
        process.terminate()
        process.wait(timeout=30)
    worker = next(e for e in entries if e["logger"] == "sinks.store.worker")
    assert worker["level"] == "WARNING" and "cannot reach Kafka" in worker["message"]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)


def test_a_bad_log_format_stops_the_process_before_it_starts() -> None:
    env = {**os.environ, "CONVOSCOPE_LOG_FORMAT": "xml"}
    refused = subprocess.run([sys.executable, "-m", "convoscope", "topics", "list"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0 and "log_format" in refused.stderr
