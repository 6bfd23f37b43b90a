"""Settings: `COACH_*` environment variables, an optional TOML file (`COACH_CONFIG`), and the
standard variables their libraries read (`DATABASE_URL`, `REDIS_URL`, `OPENAI_API_KEY`, ...).

Precedence, highest first: environment, TOML file, defaults. Nested values take `__` in the
environment, for example `COACH_QUOTAS__TURNS_PER_MINUTE=5`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "AssessSettings",
    "BreakerSettings",
    "DeadlineSettings",
    "Price",
    "ProviderConfig",
    "QuotaSettings",
    "RetrySettings",
    "Settings",
    "VoiceSettings",
    "default_data_dir",
]


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "coach-gateway"


class ProviderConfig(BaseModel):
    """One upstream vendor account."""

    kind: Literal["openai", "anthropic", "sim"]
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    # "native": `providers.http_stream` + orjson, the fast path; "sdk": the vendor's official SDK
    # client.
    client: Literal["native", "sdk"] = "native"
    daily_budget_usd: float | None = None


class Price(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


class QuotaSettings(BaseModel):
    turns_per_minute: int = 20
    tokens_per_day: int = 200_000
    audio_seconds_per_day: int = 1800
    concurrent_streams: int = 2
    connections: int = 5


class BreakerSettings(BaseModel):
    window_s: float = 30.0
    min_calls: int = 5
    failure_rate: float = 0.5
    slow_ttft_ms: float = 8000.0
    cooldown_s: float = 15.0
    max_cooldown_s: float = 300.0
    half_open_probes: int = 2
    # An auth error (401/403) takes the target out this long, then one probe call tries it again
    # (a rotated key recovers without a restart).
    auth_cooldown_s: float = 300.0


class RetrySettings(BaseModel):
    attempts_per_target: int = 2
    base_delay_ms: float = 50.0
    max_delay_ms: float = 1000.0


class DeadlineSettings(BaseModel):
    first_token_s: float = 10.0
    stall_s: float = 15.0
    turn_s: float = 180.0


class VoiceSettings(BaseModel):
    stt_model: str | None = None  # a CTranslate2 model directory or a size name; None = bundled
    stt_workers: int = 1
    stt_queue: int = 8
    max_utterance_s: float = 60.0
    max_upload_bytes: int = 25 * 1024 * 1024
    tts: list[str] = Field(default_factory=lambda: ["edge", "piper"])
    edge_voice: str = "en-US-AriaNeural"
    piper_model: str | None = None  # an .onnx path; None = the bundled joe voice
    tts_workers: int = 1


class AssessSettings(BaseModel):
    enabled: bool = True
    workers: int = 2
    queue_size: int = 256
    # A claimed job's lease, renewed every third of it while the job runs: a killed worker's
    # job is taken up by another within lease_s + poll_s (the poll finds expired leases).
    lease_s: float = 6.0
    poll_s: float = 2.0
    drain_s: float = 5.0
    session_idle_minutes: float = 20.0
    buffer_min_turns: int = 3
    buffer_max_turns: int = 6


class Settings(BaseSettings):
    """Everything the gateway reads. Every command builds one of these the same way."""

    model_config = SettingsConfigDict(
        env_prefix="COACH_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Field(default_factory=default_data_dir)
    public_url: str | None = None

    # auth
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"]
    )

    # limits of the wire
    max_message_bytes: int = 64 * 1024
    max_audio_frame_bytes: int = 256 * 1024
    send_queue_size: int = 256
    send_timeout_s: float = 10.0  # a client whose queue stays full this long is dropped
    # Inbound bounds of one WebSocket: past either (averaged over a second, bursts of twice
    # allowed) the client gets an `error` event, then close 1008.
    inbound_frames_per_s: float = 100.0
    inbound_bytes_per_s: int = 1024 * 1024
    # An HTTP request whose head is not complete this long after the connection (or the previous
    # response) is closed: slow-loris.
    request_head_timeout_s: float = 5.0
    # Repeated rejections of one client (quota, bounds) are logged once per interval with a count.
    log_sample_interval_s: float = 10.0
    history_turns: int = 20
    max_reply_tokens: int = 512
    max_running_turns: int = (
        0  # per process; past it new turns are shed (503 / server_busy); 0 = no cap
    )
    shutdown_grace_s: float = 10.0
    # The garbage collector's thresholds while serving (`gc.set_threshold`; Python's own are
    # 700, 10, 10). Each collection stops the event loop: see `gateway.server.GatewayServer`.
    gc_thresholds: tuple[int, int, int] = (700, 50, 10)

    # upstreams
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, list[str]] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict)
    sim_url: str = "http://127.0.0.1:9100"
    openai_api_key: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "COACH_OPENAI_API_KEY")
    )
    anthropic_api_key: str | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "COACH_ANTHROPIC_API_KEY"),
    )

    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    deadlines: DeadlineSettings = Field(default_factory=DeadlineSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    assess: AssessSettings = Field(default_factory=AssessSettings)

    # services
    persistence: bool = True  # false: no database, sessions in memory, no assessments
    # A turn's write to Postgres past this goes to the spool instead (`gateway.turn_store`).
    store_timeout_s: float = 5.0
    spool_max_mb: int = 64  # the spool of one process; when full, new turns are refused (503)
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "COACH_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "COACH_REDIS_URL")
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "COACH_OTLP_ENDPOINT"),
    )
    service_name: str = "coach-gateway"
    log_level: str = "info"
    coaching_feedback_interval_s: float = 30.0
    ops_snapshot_interval_s: float = 1.0
    feed_replay_events: int = 512

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_path = os.environ.get("COACH_CONFIG")
        if config_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_path)))
        return tuple(sources)

    def with_default_upstreams(self) -> Settings:
        """Fill providers and routes when none are configured.

        Real vendor keys in the environment win; without any, the simulated upstream at
        `sim_url` serves both wire formats so the gateway runs keyless.
        """
        if self.providers:
            return self
        providers: dict[str, ProviderConfig] = {}
        chat: list[str] = []
        if self.openai_api_key:
            providers["openai"] = ProviderConfig(kind="openai", api_key=self.openai_api_key)
            chat.append("openai:gpt-4o-mini")
        if self.anthropic_api_key:
            providers["anthropic"] = ProviderConfig(
                kind="anthropic", api_key=self.anthropic_api_key
            )
            chat.append("anthropic:claude-haiku-4-5")
        if not providers:
            providers["primary"] = ProviderConfig(
                kind="openai", base_url=f"{self.sim_url}/v1", api_key="sk-sim"
            )
            providers["backup"] = ProviderConfig(
                kind="anthropic", base_url=self.sim_url, api_key="sk-sim"
            )
            chat = ["primary:gpt-4o-mini", "backup:claude-haiku-4-5"]
        routes = {"chat": chat, "assess": chat[:1], **self.routes}
        return self.model_copy(update={"providers": providers, "routes": routes})

    def public_limits(self) -> dict[str, Any]:
        """The limits a client is told in `session.created`."""
        return {
            **self.quotas.model_dump(),
            "max_message_bytes": self.max_message_bytes,
            "max_utterance_s": self.voice.max_utterance_s,
        }
