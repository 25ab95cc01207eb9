"""The store sink: conversation events and final transcripts into SQL (SQLite or PostgreSQL)."""

from sinks.store.worker import STORE_GROUP, STORE_TOPICS, decode_batch, run_store_worker, write_with_retry
from sinks.store.writer import StoreRecord, WriteStats, apply_record, message_row, write_batch

__all__ = [
    "STORE_GROUP",
    "STORE_TOPICS",
    "StoreRecord",
    "WriteStats",
    "apply_record",
    "decode_batch",
    "message_row",
    "run_store_worker",
    "write_batch",
    "write_with_retry",
]
