"""Configuration from the environment, validated once at start and passed down."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of dialer-stats; `KAFKA_BOOTSTRAP_SERVERS` and `REDIS_URL` are unprefixed."""

    model_config = SettingsConfigDict(env_prefix="DIALER_STATS_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices(
            "KAFKA_BOOTSTRAP_SERVERS", "DIALER_STATS_KAFKA_BOOTSTRAP_SERVERS"
        ),
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "DIALER_STATS_REDIS_URL"),
    )
    redis_cluster: bool = False
    redis_max_connections: int = Field(default=64, ge=2)

    topic_batches: str = "dialer.batches"
    topic_contacts: str = "dialer.contacts"
    topic_call_records: str = "dialer.call_records"
    topic_dead_letter: str = "dialer.dead_letter"
    topic_partitions: int = Field(default=6, ge=1)

    consumer_group: str = "dialer-stats"
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    fetch_max_records: int = Field(default=20000, ge=1)
    fetch_max_wait_ms: int = Field(default=25, ge=1, le=10_000)
    commit_interval: float = Field(default=1.0, gt=0)
    session_timeout: float = Field(default=10.0, gt=0)
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    failpoint: str = ""  # fault-injection tests only: see processors/worker/failpoints.py
    # what `produce` and the dead-letter producer compress with (every reader decodes all)
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"

    reconcile_lock_seconds: int = Field(default=600, ge=10)
    reconcile_metrics_port: int = Field(default=0, ge=0, le=65535)
    reconcile_catch_up_seconds: float = Field(default=10.0, ge=0)
    # `log` (the source topics) or the dialer's database, `mongodb://HOST:PORT/DB`
    reconcile_source: str = Field(default="log", pattern=r"^(log|mongodb(\+srv)?://.+)$")
    mongo_batches: str = "batches"
    mongo_contacts: str = "contacts"
    mongo_call_records: str = "call_records"

    stream_heartbeat_seconds: float = Field(default=15.0, gt=0)
    ready_max_lag: int = Field(default=100_000, ge=0)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)

    @property
    def compression_type(self) -> str | None:
        """The producers' `compression_type` (None: uncompressed)."""
        return None if self.compression == "none" else self.compression

    @property
    def source_topics(self) -> tuple[str, str, str]:
        """The three topics the worker consumes."""
        return (self.topic_batches, self.topic_contacts, self.topic_call_records)

    @property
    def all_topics(self) -> tuple[str, ...]:
        """The source topics and the dead-letter topic."""
        return (*self.source_topics, self.topic_dead_letter)
