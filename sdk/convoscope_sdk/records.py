"""API answers as plain JSON dicts that also allow attribute access by the official SDK's snake_case names.

The official SDK returned generated model objects (``response.messages[0].time_offset``); code written against it
keeps working, and new code can treat answers as the JSON the API documents (``response["messages"][0]
["timeOffset"]``).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["EventText", "Record", "camel_case", "snake_case", "wrap"]

_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake_case(name: str) -> str:
    return _UPPER.sub("_", name).lower()


def wrap(value: Any) -> Any:
    """JSON → the same JSON with every object a ``Record``."""
    if isinstance(value, Record):
        return value
    if isinstance(value, dict):
        return Record({key: wrap(item) for key, item in value.items()})
    if isinstance(value, list):
        return [wrap(item) for item in value]
    return value


class Record(dict[str, Any]):
    """A JSON object. ``record.time_offset`` reads ``record["timeOffset"]`` (or ``record["time_offset"]``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for key in (name, camel_case(name)):
            if key in self:
                return self[key]
        raise AttributeError(f"no field {name!r} (fields: {', '.join(self)})")

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists with snake_case keys, like the official SDK's models' ``to_dict()``."""
        return {snake_case(key): _plain(value) for key, value in self.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


class EventText(str):
    """An event as JSON text, which is what the official SDK's telephony callbacks received, that also reads like the
    parsed event: ``event["type"]``, ``event.get("isFinal")``, ``event.data``."""

    data: Record

    def __new__(cls, record: Record) -> EventText:
        text = super().__new__(cls, json.dumps(record))
        text.data = record
        return text

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self.data[key]
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)
