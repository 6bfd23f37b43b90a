"""Settings: `COACH_*` environment variables, an optional TOML file (`COACH_CONFIG`), and the
standard variables their libraries read (`DATABASE_URL`, `REDIS_URL`, `OPENAI_API_KEY`, ...).

Precedence, highest first: environment, TOML file, defaults. Nested values take `__` in the
environment, for example `COACH_QUOTAS__TURNS_PER_MINUTE=5`.

Strict: a key the gateway does not know, in the file or in a `COACH_` variable, fails
validation like a wrong value, so that a typo is never silently ignored. `load_settings` says
every mistake in one line (`gateway.settings_errors`).
"""

from __future__ import annotations

import json
import os
import re
import string
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_origin
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from providers.resilience import BreakerConfig, DeadlineConfig, RetryConfig

__all__ = [
    "CONFIG_ENV",
    "INSIGHT_FACTS",
    "ROUTES",
    "AgentSettings",
    "AssessSettings",
    "BreakerSettings",
    "ConfigError",
    "DeadlineSettings",
    "InsightSettings",
    "Price",
    "ProviderConfig",
    "QuotaSettings",
    "QuotaTier",
    "RetrySettings",
    "SchedulerSettings",
    "Settings",
    "SkillSettings",
    "SkillsSettings",
    "VoiceSettings",
    "default_data_dir",
    "load_settings",
    "read_config_file",
]

CONFIG_ENV = "COACH_CONFIG"  # names the TOML file; the one `COACH_` variable that is no setting
# The routes the gateway calls; `[routes]` takes no other name.
ROUTES = ("chat", "assess", "skills")


class ConfigError(Exception):
    """A configuration mistake; `problems` says each one in a line, in the gateway's words."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "coach-gateway"


def _list_from_text(value: Any) -> Any:
    """A list given as text (an environment variable): a JSON list, or items separated by
    commas (`http://a,http://b`, the form most people type)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("is neither a JSON list nor comma-separated items") from None
    return [item.strip() for item in text.split(",") if item.strip()]


# `NoDecode`: the environment source hands the text to `_list_from_text` instead of insisting
# on JSON.
TextList = Annotated[list[str], NoDecode, BeforeValidator(_list_from_text)]
TtsName = Literal["edge", "piper"]
TtsList = Annotated[list[TtsName], NoDecode, BeforeValidator(_list_from_text)]
DEFAULT_TTS: tuple[TtsName, ...] = ("piper",)  # local: no reply text leaves the machine
IntTriple = Annotated[tuple[int, int, int], NoDecode, BeforeValidator(_list_from_text)]


class _Section(BaseModel):
    """A table of the config file: an unknown key in it is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Section):
    """One upstream vendor account."""

    kind: Literal["openai", "anthropic", "sim"]
    base_url: str | None = None
    api_key: str | None = None
    timeout_s: float = 60.0
    # "native": `providers.http_stream` + orjson, the fast path; "sdk": the vendor's official SDK
    # client.
    client: Literal["native", "sdk"] = "native"
    daily_budget_usd: float | None = None


class Price(_Section):
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


class QuotaTier(_Section):
    """`[quotas.tiers.NAME]`: the limits of tokens whose `tier` claim is NAME; a limit left out
    is the top-level one."""

    turns_per_minute: int | None = None
    tokens_per_day: int | None = None
    audio_seconds_per_day: int | None = None
    concurrent_streams: int | None = None
    connections: int | None = None


class QuotaSettings(_Section):
    turns_per_minute: int = 20
    tokens_per_day: int = 200_000
    audio_seconds_per_day: int = 1800
    concurrent_streams: int = 2
    connections: int = 5
    # Tokens without a `tier` claim get the tier `default`: the limits above (a
    # `[quotas.tiers.default]` table changes them for those tokens only).
    tiers: dict[str, QuotaTier] = Field(default_factory=dict)

    def for_tier(self, name: str) -> QuotaSettings:
        """The limits of tier `name` (the top-level ones where it sets none), without tiers."""
        tier = self.tiers.get(name)
        changed = tier.model_dump(exclude_none=True) if tier is not None else {}
        return self.model_copy(update={**changed, "tiers": {}})


# The resilience defaults are those of the plain configs `providers` runs with: written once.
_BREAKER, _RETRY, _DEADLINES = BreakerConfig(), RetryConfig(), DeadlineConfig()


class BreakerSettings(_Section):
    window_s: float = _BREAKER.window_s
    min_calls: int = _BREAKER.min_calls
    failure_rate: float = _BREAKER.failure_rate
    slow_ttft_ms: float = _BREAKER.slow_ttft_ms
    cooldown_s: float = _BREAKER.cooldown_s
    max_cooldown_s: float = _BREAKER.max_cooldown_s
    half_open_probes: int = _BREAKER.half_open_probes
    # An auth error (401/403) takes the target out this long, then one probe call tries it again
    # (a rotated key recovers without a restart).
    auth_cooldown_s: float = _BREAKER.auth_cooldown_s


class RetrySettings(_Section):
    attempts_per_target: int = _RETRY.attempts_per_target
    base_delay_ms: float = _RETRY.base_delay_s * 1000
    max_delay_ms: float = _RETRY.max_delay_s * 1000


class DeadlineSettings(_Section):
    first_token_s: float = _DEADLINES.first_token_s
    stall_s: float = _DEADLINES.stall_s
    answer_s: float = _DEADLINES.answer_s  # a JSON-schema answer, read whole (not streamed)
    turn_s: float = 180.0


class VoiceSettings(_Section):
    stt_model: str | None = None  # a CTranslate2 model directory or a size name; None = bundled
    stt_workers: int = Field(default=1, ge=1)
    stt_queue: int = Field(default=8, ge=0)
    # Decoding: the default beam is chosen from the WER/latency table in loadtests/BENCHMARKS.md.
    stt_beam_size: int = Field(default=5, ge=1, le=10)
    stt_vad_filter: bool = True
    stt_cpu_threads: int = Field(default=1, ge=1)  # CTranslate2 threads per worker
    max_utterance_s: float = Field(default=60.0, gt=0)
    max_upload_bytes: int = 25 * 1024 * 1024
    tts: TtsList = Field(default_factory=lambda: list(DEFAULT_TTS))
    edge_voice: str = "en-US-AriaNeural"
    piper_model: str | None = None  # an .onnx path; None = the bundled joe voice
    tts_workers: int = Field(default=1, ge=1)
    tts_cpu_threads: int = Field(default=1, ge=1)  # onnxruntime threads of the piper voice
    # Server VAD (`turn_detection: server_vad`): the defaults a session's values replace.
    vad_threshold: float = Field(default=0.5, gt=0, lt=1)
    vad_silence_ms: int = Field(default=500, ge=100, le=5000)
    vad_workers: int = Field(default=1, ge=1)
    partial_every_ms: int = Field(default=1000, ge=200)  # new audio between partial transcripts


class AssessSettings(_Section):
    enabled: bool = True
    # Jobs in progress at once. A job mostly waits on the model (seconds for a JSON answer), so
    # keeping up with a hundred chat sessions takes a hundred or more at once; each holds a
    # database connection only for its short steps (the pipeline's own pool).
    workers: int = Field(default=128, ge=1, le=1024)
    queue_size: int = 256
    # A claimed job's lease, renewed every third of it while the job runs: a killed worker's
    # job is taken up by another within lease_s + poll_s (the poll finds expired leases).
    lease_s: float = 6.0
    poll_s: float = 2.0
    drain_s: float = 5.0
    session_idle_minutes: float = 20.0
    buffer_min_turns: int = 3
    buffer_max_turns: int = 6


_SAFETY_TEXT = (
    "That sounds like pain or an injury, and that is not something practice should push "
    "through. Please stop the exercise that causes it and rest, and see a doctor or a "
    "physiotherapist (for your voice, a voice doctor) before you go on; if the pain is severe or "
    "came on suddenly, get medical help now. We can pick the practice up again once you have "
    "been checked."
)
_CRISIS_TEXT = (
    "I'm really sorry you're feeling this way, and I'm glad you said it. I'm a practice coach and "
    "can't give you the help you deserve here, but you don't have to face this alone. If you "
    "might act on these thoughts, call your local emergency number now (911 in the US, 112 in "
    "Europe), or reach a crisis line: 988 in the US, Samaritans on 116 123 in the UK and "
    "Ireland, or findahelpline.com elsewhere. Talking to someone you trust can help too."
)


class AgentSettings(_Section):
    """`[agent]`: the agent's tools, proposed changes, memory, and the guardrails' answers."""

    tool_timeout_s: float = Field(default=10.0, gt=0)  # one tool call, database reads included
    # Model calls of one turn that may end in tool calls; the next one is offered no tools.
    max_tool_rounds: int = Field(default=4, ge=0, le=16)
    tool_output_bytes: int = Field(default=8192, ge=512)  # a tool result the model is given
    change_ttl_h: float = Field(default=24.0, gt=0)  # a proposed change expires unanswered
    memory_budget_tokens: int = Field(default=300, ge=0)  # memories in one turn's context
    # The answer to a message about pain or injury, and to one about self-harm: sent in place
    # of the model's, so the turn never goes to a coaching prompt as if it were routine.
    safety_text: str = Field(default=_SAFETY_TEXT, min_length=1)
    crisis_text: str = Field(default=_CRISIS_TEXT, min_length=1)


class SkillSettings(_Section):
    """One coaching skill: its model call, how long its answer is reused, and the text its
    safe default answer is built from when the model fails."""

    max_tokens: int = Field(default=700, ge=1)
    cache_ttl_h: float = Field(default=24.0, ge=0)
    timeout_s: float = Field(default=20.0, gt=0)
    fallback: str = Field(min_length=1)


class FeedbackSettings(SkillSettings):
    fallback: str = Field(
        default="Feedback is not available right now. Keep practising: record one short take, "
        "listen back once, and work through the drill below slowly.",
        min_length=1,
    )


class PracticeSettings(SkillSettings):
    fallback: str = Field(
        default="Practise for about ten minutes today on your first focus: warm up, then work "
        "through the drills below slowly, with attention rather than speed.",
        min_length=1,
    )


class SkillsSettings(_Section):
    """`[skills.feedback]`, `[skills.practice]`; their model calls take the `skills` route when
    `[routes]` names one, else `assess`."""

    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    practice: PracticeSettings = Field(default_factory=PracticeSettings)


class SchedulerSettings(_Section):
    """`[scheduler]`: how the insight types with a `schedule` are made (`gateway.scheduler`).
    Each tick runs once across every process; a tick is at most `max_users_per_tick` users, in
    batches of `batch` with at most `concurrency` insights made at once."""

    enabled: bool = True
    poll_s: float = Field(default=30.0, gt=0)
    batch: int = Field(default=50, ge=1, le=1000)
    concurrency: int = Field(default=4, ge=1, le=64)
    max_users_per_tick: int = Field(default=10_000, ge=1)
    # The claim on a tick, renewed with each batch: a claimer that dies is taken over this long
    # after its last batch, where it stopped.
    lease_s: float = Field(default=120.0, gt=0)
    # A tick first seen this long after its time is skipped (no yesterday's summaries after an
    # outage).
    late_minutes: float = Field(default=60.0, gt=0)
    active_days: int = Field(default=7, ge=1)


# The names a `[insights.TYPE]` fallback may hold as `{name}` (see `gateway.insight_jobs`).
INSIGHT_FACTS = ("sessions_7d", "minutes_7d", "streak_days", "top_error", "focus")
_FACT_SAMPLES: dict[str, object] = {
    "sessions_7d": 3,
    "minutes_7d": 42,
    "streak_days": 2,
    "top_error": "pace",
    "focus": "clarity",
}
_INSIGHT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}")


class InsightSettings(_Section):
    """`[insights.TYPE]`: one insight type. `fallback` may name the user's facts as `{name}`
    (`INSIGHT_FACTS`; a literal brace is doubled); `schedule` is a five-field cron expression
    (UTC) for the scheduler, none = on request only."""

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=200, ge=1)
    ttl_h: float = Field(default=24.0, ge=0)
    fallback: str = Field(min_length=1)
    schedule: str | None = None

    @field_validator("fallback")
    @classmethod
    def _fallback_names_facts(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError:
            raise ValueError("fallback has an unmatched brace (double a literal one)") from None
        unknown = sorted(names - set(INSIGHT_FACTS))
        if unknown:
            known = ", ".join(INSIGHT_FACTS)
            raise ValueError(f"fallback names unknown facts {unknown}; known: {known}")
        try:
            value.format_map(_FACT_SAMPLES)
        except ValueError:
            raise ValueError("fallback has a {fact} field with a wrong format") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError("schedule must be a five-field cron expression, e.g. '0 20 * * *'")
        return value


def _insight(
    prompt: str, max_tokens: int, ttl_h: float, fallback: str, schedule: str | None = None
) -> dict[str, Any]:
    return {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ttl_h": ttl_h,
        "fallback": fallback,
        "schedule": schedule,
    }


# The shipped insight types (seeds/001): a `[insights.TYPE]` table changes the keys it names.
DEFAULT_INSIGHTS: dict[str, dict[str, Any]] = {
    "daily_summary": _insight(
        "You are an encouraging practice coach. Write an end-of-day summary in two or three "
        "sentences: name what the learner did today and this week (sessions, minutes, streak) "
        "and one thing that built momentum. Be warm and concise.",
        200,
        20.0,
        "You practised {sessions_7d} sessions ({minutes_7d} minutes) in the last 7 days. "
        "Keep building momentum: a short session tomorrow counts.",
        "0 20 * * *",
    ),
    "weekly_review": _insight(
        "You are a data-minded practice analyst. Review the learner's week: the sessions and "
        "minutes, the most frequent errors, the weakest focus, and end with one concrete "
        "suggestion for next week. Be direct, no filler.",
        300,
        168.0,
        "This week: {sessions_7d} sessions, {minutes_7d} minutes. Next week, give a few minutes "
        "of each session to {focus}, and stay consistent.",
        "0 18 * * 0",
    ),
    "performance_tip": _insight(
        "You are a practice coach. Give ONE specific, actionable tip based on the learner's "
        "recent errors and weakest focus: an exact action or technique, under 40 words.",
        150,
        24.0,
        "Work on {focus} today: slow down, repeat the hardest part three times, then try it "
        "at full pace once.",
    ),
    "milestone_celebration": _insight(
        "You are an upbeat coach. Celebrate the learner's achievement (streak, sessions, a "
        "focus level that rose) with energy, under 50 words, and name the achievement.",
        150,
        24.0,
        "You have practised {streak_days} days in a row and {sessions_7d} sessions this week. "
        "Well done: keep it going!",
    ),
    "streak_motivation": _insight(
        "You are a streak guardian. Motivate the learner to keep their practice streak alive "
        "today: say what they would lose and suggest a short session. Under 30 words.",
        120,
        12.0,
        "Your streak is {streak_days} days. A quick 10-minute session today keeps it alive.",
    ),
    "session_recap": _insight(
        "You are a practice coach. Recap the session the learner just finished in two or "
        "three sentences: what they worked on, what went well, and one thing to try next time.",
        250,
        1.0,
        "Session done: that makes {sessions_7d} sessions in the last 7 days. Next time, start "
        "with a few minutes on {focus}.",
    ),
}


def _merge_insights(value: Any) -> Any:
    """The shipped types with what the configuration says over them, key by key."""
    if not isinstance(value, dict):
        return value
    merged: dict[str, Any] = {name: dict(body) for name, body in DEFAULT_INSIGHTS.items()}
    for name, body in value.items():
        if not isinstance(name, str) or not _INSIGHT_TYPE.fullmatch(name):
            raise ValueError(f"insight type {name!r} must be 1-40 of a-z, 0-9, _ (a letter first)")
        base = merged.get(name, {})
        merged[name] = {**base, **body} if isinstance(body, dict) else body
    return merged


class Settings(BaseSettings):
    """Everything the gateway reads. Every command builds one of these the same way."""

    model_config = SettingsConfigDict(
        env_prefix="COACH_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    # Where users reach the gateway (behind a proxy, say): the base of the URLs `serve` and
    # `demo` print, and an allowed browser origin (the gateway serves its own chat page there).
    public_url: str | None = None

    # auth
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    allowed_origins: TextList = Field(
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
    gc_thresholds: IntTriple = (700, 50, 10)

    # upstreams
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: dict[str, TextList] = Field(default_factory=dict)
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
    skills: SkillsSettings = Field(default_factory=SkillsSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    # `[insights.TYPE]`: the shipped types (`DEFAULT_INSIGHTS`) and any the configuration adds.
    insights: Annotated[dict[str, InsightSettings], BeforeValidator(_merge_insights)] = Field(
        default_factory=lambda: _merge_insights({})
    )
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    # A TOML drill catalog in place of the shipped one (gateway/data/drills.toml), read at start.
    drills_file: Path | None = None

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
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    coaching_feedback_interval_s: float = 30.0
    ops_snapshot_interval_s: float = 1.0
    feed_replay_events: int = 512
    # Several replicas (`gateway.replicas`, with `redis_url`): this process's name in the ops
    # feed (default: host name and process id), the prefix of every Redis key and channel the
    # gateway uses, and how many feed items may wait for Redis (past it new ones are dropped
    # and counted: a slow Redis never holds a turn up).
    replica_id: str | None = Field(default=None, min_length=1, max_length=64)
    redis_key_prefix: str = Field(default="coach", min_length=1, max_length=64)
    replica_outbox_events: int = Field(default=8192, ge=1)

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL, e.g. https://coach.example.com")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 (parsing it is the check)
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://user:pw@host:5432/db")
        return value

    @field_validator("routes")
    @classmethod
    def _known_routes(cls, routes: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in routes:
            if name not in ROUTES:
                raise PydanticCustomError("unknown_route", "unknown route {route}", {"route": name})
        return routes

    @model_validator(mode="after")
    def _public_origin_allowed(self) -> Settings:
        """Browsers on the public URL load the gateway's own pages: their origin is allowed."""
        if self.public_url and "*" not in self.allowed_origins:
            parts = urlsplit(self.public_url)
            origin = f"{parts.scheme}://{parts.netloc}"
            if origin not in self.allowed_origins:
                self.allowed_origins = [*self.allowed_origins, origin]
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        config_path = os.environ.get(CONFIG_ENV)
        if config_path:
            sources.append(InitSettingsSource(settings_cls, read_config_file(Path(config_path))))
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

    def has_real_provider(self) -> bool:
        """Whether the chat route reaches a vendor rather than only the simulated upstream."""
        if self.openai_api_key or self.anthropic_api_key:
            return True
        return any(config.kind != "sim" for config in self.providers.values())

    def public_limits(self) -> dict[str, Any]:
        """The limits a client is told in `session.created`."""
        return {
            **self.quotas.model_dump(exclude={"tiers"}),
            "max_message_bytes": self.max_message_bytes,
            "max_utterance_s": self.voice.max_utterance_s,
        }


class _EnvSource(EnvSettingsSource):
    """The `COACH_` variables. pydantic-settings reads only those that name a field and ignores
    the rest, even with `extra="forbid"` (only its dotenv source reports extras); here a `COACH_`
    variable that names no setting is passed on as an extra key, so that validation reports it
    beside every other mistake."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        prefix = self.env_prefix if self.case_sensitive else self.env_prefix.lower()
        config_env = CONFIG_ENV if self.case_sensitive else CONFIG_ENV.lower()
        for name, value in self.env_vars.items():
            if name.startswith(prefix) and name != config_env:
                key = name[len(prefix) :]
                if key and not _names_a_setting(self.settings_cls.model_fields, key):
                    data[key] = value
        return data

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError:
            name = f"{self.env_prefix}{field_name}".upper()
            raise ConfigError(
                [f"setting `{name}` is not valid JSON (or set one key per variable: {name}__KEY)"]
            ) from None


def _names_a_setting(fields: dict[str, FieldInfo], key: str) -> bool:
    """Whether the variable `COACH_<key>` is read: a field, or `__` into a table's."""
    top, nested, _ = key.partition("__")
    field = fields.get(top)
    if field is None:
        return False
    if not nested:
        return True
    annotation = field.annotation
    is_table = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return is_table or get_origin(annotation) is dict


def read_config_file(path: Path) -> dict[str, Any]:
    """The TOML file `COACH_CONFIG` names; `ConfigError` when it is missing or not TOML."""
    where = f"config file {path} ({CONFIG_ENV})"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{where} does not exist"]) from None
    except OSError as exc:
        reason = (exc.strerror or "error").lower()
        raise ConfigError([f"{where} cannot be read: {reason}"]) from None
    try:
        return tomllib.loads(raw.decode())
    except UnicodeDecodeError:
        raise ConfigError([f"{where} is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: {_toml_error(exc, raw)}"]) from None


def _toml_error(exc: tomllib.TOMLDecodeError, raw: bytes) -> str:
    """tomllib's message, its position first: `TOML syntax error at line 3, column 5: ...`."""
    message = str(exc)
    reason, _, position = message.rpartition(" (at ")
    if not reason:
        return f"TOML syntax error: {message}"
    position = position.rstrip(")")
    if position == "end of document":
        position = f"line {len(raw.splitlines()) or 1} (the end of the file)"
    return f"TOML syntax error at {position}: {reason[:1].lower()}{reason[1:]}"


def load_settings() -> Settings:
    """`Settings()` as every command builds it: any configuration mistake is raised as one
    `ConfigError`, each problem in one line, never a traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        from gateway.settings_errors import explain

        raise ConfigError(explain(exc)) from None
