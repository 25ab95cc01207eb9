"""Runs one transcription worker (tiny.en) against the broker given as argv[1]; the crash test kills it."""

from __future__ import annotations

import asyncio
import logging
import sys

from convoscope.settings import Settings
from processors.transcription.worker import run_transcription_worker

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    asyncio.run(run_transcription_worker(Settings(kafka_bootstrap=sys.argv[1], asr_model="tiny.en")))
