"""Configuration of the resilience pieces, and the clock and sleep they are given.

The defaults here are the gateway's defaults: `gateway.settings` takes its own from these, so
each is written once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["BreakerConfig", "Clock", "DeadlineConfig", "RetryConfig", "Sleep"]

Clock = Callable[[], float]
"""Monotonic seconds (`time.monotonic` unless a test fakes it)."""

Sleep = Callable[[float], Awaitable[None]]
"""Waits a number of seconds (`asyncio.sleep` unless a test fakes it)."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a target's circuit opens, and for how long.

    The circuit opens when, over the last `window_s` seconds, at least `min_calls` calls ended and
    the share of failures (transient errors and first tokens slower than `slow_ttft_ms`) reached
    `failure_rate`. It stays open `cooldown_s` (longer if the upstream asked with `Retry-After`,
    at most `max_cooldown_s`), then lets `half_open_probes` concurrent probe calls through.

    An authentication failure (401/403) takes the target out for `auth_cooldown_s`, after which
    one probe call tries it again: a rotated key recovers without a restart.
    """

    window_s: float = 30.0
    min_calls: int = 5
    failure_rate: float = 0.5
    slow_ttft_ms: float = 8000.0
    cooldown_s: float = 15.0
    max_cooldown_s: float = 300.0
    half_open_probes: int = 2
    auth_cooldown_s: float = 300.0


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Attempts on one target before failing over, with jittered exponential backoff between."""

    attempts_per_target: int = 2
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0


@dataclass(frozen=True, slots=True)
class DeadlineConfig:
    """`first_token_s` bounds the wait for a target's first chunk (its retries included; see
    `providers.routing`), `stall_s` the wait for each later chunk. `answer_s` replaces
    `first_token_s` for a JSON-schema request, whose first chunk is its whole answer (asked for
    unstreamed)."""

    first_token_s: float = 10.0
    stall_s: float = 15.0
    answer_s: float = 60.0
