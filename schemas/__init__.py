"""Avro schemas of every record on a convoscope topic, and the one place topics are declared."""

from schemas.serde import AvroSerde, SchemaError
from schemas.topics import ALL_TOPICS, Topic

__all__ = ["ALL_TOPICS", "AvroSerde", "SchemaError", "Topic"]
