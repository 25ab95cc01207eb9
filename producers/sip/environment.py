"""The SIP settings as environment variables, for a parent process (``convoscope up``) starting the SIP gateway."""

from __future__ import annotations

from pydantic import SecretStr

from convoscope.settings import Settings

__all__ = ["sip_environment"]


def sip_environment(settings: Settings) -> dict[str, str]:
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        if not name.startswith("sip_"):
            continue
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"CONVOSCOPE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
