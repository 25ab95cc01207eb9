"""One typed, frozen settings object per process, read from the environment at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./convoscope.db"


class Settings(BaseSettings):
    """Environment variables are ``CONVOSCOPE_<FIELD>``, except the two well-known ones below."""

    model_config = SettingsConfigDict(env_prefix="CONVOSCOPE_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "CONVOSCOPE_KAFKA_BOOTSTRAP"),
        description="host:port[,host:port]. Unset: `up` and `demo` start an embedded broker.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_topic_replication: int = Field(default=1, ge=1)

    database_url: str = Field(
        default=DEFAULT_SQLITE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "CONVOSCOPE_DATABASE_URL"),
    )

    asr_model: Literal["tiny.en", "base"] = "tiny.en"
    asr_threads: int = Field(default=2, ge=1)
    model_cache_dir: Path = Path.home() / ".cache" / "convoscope" / "models"

    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing key for access tokens; unset: one is generated and kept in the database.",
    )
    token_ttl_s: int = Field(default=86_400, ge=60)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_url: str | None = Field(default=None, description="Base URL clients use, e.g. https://convoscope.example.com")
    state_dir: Path = Path(".convoscope")

    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535, description="Workers' /healthz, /readyz, /metrics")

    max_frame_bytes: int = 8192
    stop_timeout_s: float = Field(default=30.0, gt=0)

    def base_url(self) -> str:
        return self.public_url.rstrip("/") if self.public_url else f"http://{self.host}:{self.port}"
