"""One typed, frozen settings object per process, read from the environment at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=1_000,
        description="A consumer silent this long is dropped from its group and its partitions go to the others: "
        "how long a crashed worker's work waits (the broker's group.min/max.session.timeout.ms must allow it)",
    )

    database_url: str = Field(
        default=DEFAULT_SQLITE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "CONVOSCOPE_DATABASE_URL"),
    )
    database_timeout_s: float = Field(
        default=5.0, gt=0,
        description="Connecting to PostgreSQL, or waiting for a pooled connection, gives up after this: the API "
        "answers 503 instead of hanging while the database is unreachable",
    )

    asr_model: Literal["tiny.en", "base", "none"] = Field(
        default="tiny.en",
        description='Whisper model; "none" recognizes nothing (every utterance becomes "[speech]"): benchmarks only',
    )
    asr_threads: int = Field(default=2, ge=1)
    asr_decode_lanes: int = Field(
        default=2, ge=1, le=8,
        description="Utterances one transcription worker decodes at the same time (finals of several streams)",
    )
    model_cache_dir: Path = Path.home() / ".cache" / "convoscope" / "models"

    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing key for access tokens; unset: one is generated and kept in the database.",
    )
    jwt_previous_secrets: SecretStr | None = Field(
        default=None,
        description="Comma-separated earlier signing keys: they still verify tokens and page links (never sign), "
        "so CONVOSCOPE_JWT_SECRET can be rotated without cutting clients off",
    )
    token_ttl_s: int = Field(default=86_400, ge=60)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate chain: the gateway serves https and wss itself (with tls_keyfile)"
    )
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")
    ws_compression: bool = Field(
        default=False,
        description="Offer permessage-deflate on WebSocket connections. Off: audio does not compress, and each "
        "compressed connection keeps its own zlib state and inflates every frame",
    )
    public_url: str | None = Field(default=None, description="Base URL clients use, e.g. https://convoscope.example.com")
    state_dir: Path = Path(".convoscope")

    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535, description="Workers' /healthz, /readyz, /metrics")

    max_frame_bytes: int = 8192
    max_streams_per_app: int = Field(
        default=500, ge=1, description="Streams (WebSocket start_requests) one app may have open on one gateway"
    )
    max_stream_s: float = Field(default=4 * 3600.0, gt=0, description="Longest audio one stream may send, seconds")
    max_control_messages_per_s: float = Field(
        default=10.0, gt=0, description="Text messages a streaming connection may send a second on average"
    )
    max_control_burst: int = Field(default=50, ge=1, description="...and in a burst")
    max_request_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest JSON request body of the REST API (recordings excepted)"
    )
    stop_timeout_s: float = Field(default=30.0, gt=0)
    gateway_buffer_bytes: int = Field(
        default=64 * 1024 * 1024, ge=64 * 1024, description="Audio one gateway process holds awaiting the broker's "
        "acknowledgement, all streams together; once spent, streams stop reading from their clients (backpressure)",
    )
    broker_stall_timeout_s: float = Field(
        default=20.0, gt=0, description="A stream the broker acknowledges nothing of for this long is closed with "
        "an error saying how much of its audio is stored (close code 1013)",
    )
    stream_lease_s: float = Field(
        default=15.0, ge=1.0, description="A gateway replica renews its streams' leases every third of this; another "
        "replica ends the streams of one that stopped renewing for this long (it died)",
    )

    # Telephony (producers/sip, docs/telephony.md): the SIP gateway process, `convoscope gateway sip`.
    semantic_trackers: bool = Field(
        default=False,
        description="Match trackers by meaning with sentence embeddings (the `semantic` extra); off by default: "
        "measured precision/recall on tests/data/trackers_dev.jsonl do not yet justify its cost (README)",
    )
    sip_enabled: bool = Field(default=False, description="`up` runs the SIP gateway; the Telephony API places calls")
    sip_host: str = Field(default="127.0.0.1", description="Address the SIP gateway binds SIP (UDP) and RTP to")
    sip_port: int = Field(default=5060, ge=0, le=65535)
    sip_public_address: str | None = Field(default=None, description="Address peers reach us at (SDP, Contact)")
    sip_rtp_port_min: int = Field(default=40000, ge=0, le=65535, description="RTP port range; 0: any free port")
    sip_rtp_port_max: int = Field(default=40999, ge=0, le=65535)
    sip_allowed_networks: str = Field(default="127.0.0.0/8,::1/128", description="CIDRs inbound INVITEs may come from")
    sip_inbound_app_id: str | None = Field(default=None, description="App owning inbound calls; unset: the oldest app")
    sip_digest_accounts: SecretStr | None = Field(
        default=None, description="user:password:appId,...; set: inbound INVITEs must authenticate as one of them"
    )
    sip_answer_timeout_s: float = Field(default=30.0, gt=0, description="Dial-out rings this long, then no_answer")
    sip_rtp_timeout_s: float = Field(default=15.0, gt=0, description="No RTP this long on an answered call: hang up")

    # Summaries (convoscope.summary): extractive unless an OpenAI-compatible chat endpoint is configured.
    llm_url: str | None = Field(
        default=None, description="OpenAI-compatible API base (…/v1) or its /chat/completions URL; unset: extractive"
    )
    llm_model: str = "default"
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=20.0, gt=0, description="Whole LLM request; on expiry: extractive summary")

    # Async API (recorded audio, producers/recorded).
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1, description="Largest recording accepted, bytes")
    max_recording_s: float = Field(default=4 * 3600.0, gt=0, description="Longest recording accepted, seconds")
    media_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated directories that file:// media URLs may read; empty: file:// is refused.",
    )
    url_fetch_timeout_s: float = Field(default=300.0, gt=0, description="Whole download of a media URL")
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    outbound_blocked_networks: str = Field(
        default="0.0.0.0/8,169.254.0.0/16,100.100.100.200/32,::/128,fe80::/10,fd00:ec2::254/128",
        description="CIDRs that webhooks, webhookUrl and media URLs may not reach (checked after DNS resolution); "
        "default: link-local (cloud metadata) and a few never-legitimate addresses (convoscope.egress); empty: none",
    )
    max_concurrent_jobs: int = Field(default=100, ge=1, description="Per app, jobs scheduled or in progress")
    job_timeout_s: float = Field(default=86_400.0, gt=0, description="A job not completed after this has failed")

    # Webhooks (sinks/webhooks, `convoscope worker webhooks`).
    webhook_max_attempts: int = Field(
        default=8, ge=1, description="Deliveries of one event to one webhook before it is dead-lettered"
    )
    webhook_backoff_initial_s: float = Field(default=1.0, gt=0, description="First retry delay; doubles, with jitter")
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest delay between two attempts")
    webhook_concurrency: int = Field(default=32, ge=1, description="Deliveries one webhook sink sends at once")
    webhook_log_retention_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Delivered and dead deliveries stay in the delivery log this long"
    )

    # Summary emails (sinks/email, `convoscope worker email`).
    smtp_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SMTP_URL", "CONVOSCOPE_SMTP_URL"),
        description="smtp://[user:password@]host[:port] (STARTTLS when offered; ?starttls=require to insist) or "
        "smtps://... (TLS from the start); unset: summary emails are recorded as failed, not sent",
    )
    smtp_from: str = Field(default="convoscope <convoscope@localhost>", description="From header of summary emails")
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    email_max_attempts: int = Field(default=5, ge=1, description="Tries to send one summary email")

    # The conversation page (GET /conversations/{id}) and its signed links.
    view_link_ttl_s: int = Field(
        default=30 * 86_400, ge=60, description="How long a signed conversation page link (emails, summaryInfo) works"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("CONVOSCOPE_TLS_CERTFILE and CONVOSCOPE_TLS_KEYFILE go together: set both or neither")
        return self

    @field_validator("outbound_blocked_networks")
    @classmethod
    def _valid_networks(cls, value: str) -> str:
        from convoscope.egress import parse_networks  # a typo must stop the process, not open the network

        parse_networks(value)
        return value

    @field_validator("media_dirs", mode="before")
    @classmethod
    def _split_media_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line with conversation/connection ids (convoscope.logs)"
    )

    def base_url(self) -> str:
        scheme = "https" if self.tls_certfile else "http"
        return self.public_url.rstrip("/") if self.public_url else f"{scheme}://{self.host}:{self.port}"
