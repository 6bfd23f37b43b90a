"""Chaos: the router built from settings, the real SDK adapters, the simulated upstream over
real HTTP, with faults switched on per model.

Route "chat" is primary (OpenAI wire, gpt-4o-mini) then backup (Anthropic wire, claude). For
every fault: what the caller sees, that failover happens only before the first token, and that
each turn ends exactly once (one completion or one error; every upstream attempt's span ended;
no request left in flight at the upstream).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.settings import (
    BreakerSettings,
    DeadlineSettings,
    ProviderConfig,
    RetrySettings,
    Settings,
)
from gateway.upstreams import build_router
from providers.chat import ChatRequest, Message
from providers.errors import (
    NoRouteAvailable,
    ProviderError,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.routing import Fallback, Router
from providers.sim import RunningSim, SimKnobs, running_sim

PRIMARY = "gpt-4o-mini"
BACKUP = "claude-haiku-4-5"
ASSESS = "gpt-4o"  # the assessment route's model on the primary provider
REQUEST = ChatRequest(model="", messages=(Message("user", "How do I keep tempo?"),))


@pytest.fixture
async def upstream() -> AsyncIterator[RunningSim]:
    """A fresh, fast, fault-free sim per test (so its counters are this test's alone)."""
    async with running_sim(SimKnobs(ttft_ms=2, tokens_per_s=0, reply_tokens=12)) as server:
        yield server


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@dataclass
class Chaos:
    sim: RunningSim
    router: Router
    exporter: InMemorySpanExporter

    async def faults(self, model: str, **knobs: Any) -> None:
        await self.sim.set_knobs(models={model: knobs})

    def requests(self, endpoint: str) -> int:
        by_endpoint: dict[str, int] = self.sim.stats()["by_endpoint"]
        return by_endpoint.get(endpoint, 0)

    async def settled(self) -> None:
        """Every upstream request has ended, and every attempt's span with it."""
        for _ in range(200):
            if self.sim.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.01)
        stats = self.sim.stats()
        assert stats["in_flight"] == 0
        assert sum(stats["by_outcome"].values()) == stats["requests"]
        chat_spans = [s for s in self.exporter.get_finished_spans() if s.name.startswith("chat ")]
        assert len(chat_spans) == stats["requests"]


@dataclass
class Turn:
    """What a caller saw in one turn."""

    target: str | None = None
    fallbacks: list[Fallback] = field(default_factory=list)
    text: str = ""
    finish_reasons: list[str] = field(default_factory=list)
    error: ProviderError | None = None
    endings: int = 0


async def run_turn(router: Router, route: str = "chat") -> Turn:
    turn = Turn()
    try:
        routed = await router.open_stream(route, REQUEST)
    except ProviderError as exc:
        turn.error, turn.endings = exc, 1
        return turn
    turn.target, turn.fallbacks = str(routed.target), routed.fallbacks
    try:
        async for chunk in routed:
            assert turn.endings == 0, "a chunk after the turn ended"
            turn.text += chunk.text
            if chunk.finish_reason:
                turn.finish_reasons.append(chunk.finish_reason)
        turn.endings += 1
    except ProviderError as exc:
        turn.error = exc
        turn.endings += 1
    finally:
        await routed.aclose()
    assert turn.endings == 1
    assert len(turn.finish_reasons) == (0 if turn.error else 1)
    return turn


class FakeClock:
    """The breakers' clock, moved by hand (cooldowns pass without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_chaos(
    sim: RunningSim,
    exporter: InMemorySpanExporter,
    *,
    route: list[str] | None = None,
    routes: dict[str, list[str]] | None = None,
    primary_key: str = "sk-sim",
    client: Literal["native", "sdk"] = "native",
    timeout_s: float = 60.0,
    clock: FakeClock | None = None,
    **overrides: Any,
) -> Chaos:
    options: dict[str, Any] = {
        "retry": RetrySettings(attempts_per_target=2, base_delay_ms=1, max_delay_ms=5),
        "deadlines": DeadlineSettings(first_token_s=0.5, stall_s=0.5),
        "breaker": BreakerSettings(min_calls=50),
        **overrides,
    }
    settings = Settings(
        sim_url=sim.url,
        providers={
            "primary": ProviderConfig(
                kind="openai",
                base_url=f"{sim.url}/v1",
                api_key=primary_key,
                client=client,
                timeout_s=timeout_s,
            ),
            "backup": ProviderConfig(
                kind="anthropic", base_url=sim.url, api_key="sk-sim", client=client
            ),
        },
        routes=routes or {"chat": route or [f"primary:{PRIMARY}", f"backup:{BACKUP}"]},
        **options,
    )
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    router = build_router(settings, tracer_provider=tracer_provider, clock=clock or time.monotonic)
    return Chaos(sim, router, exporter)


@pytest.fixture
async def chaos(upstream: RunningSim, exporter: InMemorySpanExporter) -> AsyncIterator[Chaos]:
    chaos = make_chaos(upstream, exporter)
    yield chaos
    await chaos.router.aclose()


async def test_healthy_route_answers_on_the_first_target(chaos: Chaos) -> None:
    turn = await run_turn(chaos.router)
    assert turn.target == f"primary:{PRIMARY}" and turn.fallbacks == []
    assert turn.error is None and turn.finish_reasons == ["stop"] and turn.text.strip()
    await chaos.settled()


async def test_500s_are_retried_then_failed_over(chaos: Chaos) -> None:
    await chaos.faults(PRIMARY, fail_rate=1.0, fail_status=500)
    turn = await run_turn(chaos.router)
    assert turn.target == f"backup:{BACKUP}" and turn.error is None
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "upstream_unavailable", 500)]
    assert chaos.requests("chat.completions") == 2  # attempts_per_target
    assert chaos.requests("messages") == 1
    await chaos.settled()


async def test_429_with_retry_after_opens_the_circuit(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    chaos = make_chaos(upstream, exporter, breaker=BreakerSettings(min_calls=1, cooldown_s=1))
    await chaos.faults(PRIMARY, fail_rate=1.0, fail_status=429, retry_after=30.0)
    first = await run_turn(chaos.router)
    assert first.fallbacks == [Fallback(f"primary:{PRIMARY}", "upstream_rate_limited", 429)]
    assert chaos.requests("chat.completions") == 1  # Retry-After beyond the backoff: no retry
    assert chaos.router.breaker_states()[f"primary:{PRIMARY}"] == "open"
    await asyncio.sleep(1.2)  # past cooldown_s, but Retry-After lengthened the cooldown
    second = await run_turn(chaos.router)
    assert second.fallbacks == [Fallback(f"primary:{PRIMARY}", "circuit_open")]
    assert second.target == f"backup:{BACKUP}" and second.error is None
    assert chaos.requests("chat.completions") == 1
    await chaos.settled()
    await chaos.router.aclose()


async def test_529_overloaded_fails_over(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    chaos = make_chaos(upstream, exporter, route=[f"backup:{BACKUP}", f"primary:{PRIMARY}"])
    await chaos.faults(BACKUP, fail_rate=1.0, fail_status=529)
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"backup:{BACKUP}", "upstream_unavailable", 529)]
    assert turn.target == f"primary:{PRIMARY}" and turn.error is None
    await chaos.settled()
    await chaos.router.aclose()


@pytest.mark.parametrize("client", ["native", "sdk"])
async def test_a_hang_fails_over_at_the_first_token_deadline_without_a_retry(
    upstream: RunningSim, exporter: InMemorySpanExporter, client: Literal["native", "sdk"]
) -> None:
    chaos = make_chaos(upstream, exporter, client=client)
    await chaos.faults(PRIMARY, hang_rate=1.0)
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "upstream_timeout")]
    assert turn.target == f"backup:{BACKUP}" and turn.error is None
    await chaos.settled()  # the hung request was abandoned, not leaked
    assert chaos.requests("chat.completions") == 1  # called once: no retry of a missed deadline
    assert chaos.sim.stats()["by_outcome"]["hung"] == 1
    await chaos.router.aclose()


async def test_slow_first_tokens_open_the_circuit(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    breaker = BreakerSettings(min_calls=2, failure_rate=0.5, slow_ttft_ms=60)
    chaos = make_chaos(upstream, exporter, breaker=breaker)
    await chaos.faults(PRIMARY, ttft_ms=150)
    for _ in range(2):  # slow answers are still answers
        turn = await run_turn(chaos.router)
        assert turn.target == f"primary:{PRIMARY}" and turn.error is None
    assert chaos.router.breaker_states()[f"primary:{PRIMARY}"] == "open"
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "circuit_open")]
    assert turn.target == f"backup:{BACKUP}"
    await chaos.settled()
    await chaos.router.aclose()


async def test_mid_stream_drop_fails_the_turn_without_failover(chaos: Chaos) -> None:
    await chaos.faults(PRIMARY, drop_after=3)
    turn = await run_turn(chaos.router)
    assert turn.target == f"primary:{PRIMARY}"
    assert isinstance(turn.error, StreamInterrupted) and turn.error.transient
    assert turn.text  # the partial reply the caller keeps
    assert chaos.requests("chat.completions") == 1 and chaos.requests("messages") == 0
    await chaos.settled()


@pytest.mark.parametrize("client", ["native", "sdk"])
async def test_a_stall_ends_the_stream_once_at_the_stall_deadline(
    upstream: RunningSim, exporter: InMemorySpanExporter, client: Literal["native", "sdk"]
) -> None:
    # The provider's own timeout is shorter than the stall deadline: it bounds connecting and
    # the first bytes only, and the stall deadline alone bounds the waits between chunks.
    deadlines = DeadlineSettings(first_token_s=2.0, stall_s=0.4)
    chaos = make_chaos(upstream, exporter, deadlines=deadlines, client=client, timeout_s=0.2)
    await chaos.faults(PRIMARY, tokens_per_s=1)
    turn = await run_turn(chaos.router)  # asserts the turn ended exactly once
    assert turn.target == f"primary:{PRIMARY}" and turn.text
    assert isinstance(turn.error, UpstreamTimeout)
    assert turn.error.message == "upstream stalled: nothing arrived within 0.4s"
    await chaos.settled()
    assert chaos.sim.stats()["by_outcome"]["cancelled"] == 1
    [span] = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert span.attributes is not None and span.attributes["error.type"] == "upstream_timeout"
    await chaos.router.aclose()


async def test_stall_between_chunks_fails_the_turn(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    deadlines = DeadlineSettings(first_token_s=2.0, stall_s=0.15)
    chaos = make_chaos(upstream, exporter, deadlines=deadlines)
    await chaos.faults(PRIMARY, tokens_per_s=2)
    turn = await run_turn(chaos.router)
    assert turn.target == f"primary:{PRIMARY}"
    assert isinstance(turn.error, UpstreamTimeout)
    assert chaos.requests("messages") == 0
    await chaos.settled()
    await chaos.router.aclose()


async def test_malformed_chunk_before_the_first_token_fails_over(chaos: Chaos) -> None:
    await chaos.faults(PRIMARY, malformed_rate=1.0)
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "malformed_response")]
    assert turn.target == f"backup:{BACKUP}" and turn.error is None
    await chaos.settled()


async def test_every_target_failing_raises_a_retryable_error(chaos: Chaos) -> None:
    await chaos.sim.set_knobs(fail_rate=1.0, fail_status=503)
    turn = await run_turn(chaos.router)
    assert isinstance(turn.error, UpstreamUnavailable) and turn.error.transient
    assert turn.error.status == 503
    assert chaos.requests("chat.completions") == 2 and chaos.requests("messages") == 2
    await chaos.settled()


async def test_bad_key_makes_the_target_unusable(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    await upstream.set_knobs(require_key="sk-sim")
    chaos = make_chaos(upstream, exporter, primary_key="sk-wrong")
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "upstream_auth_failed", 401)]
    assert turn.target == f"backup:{BACKUP}"
    assert chaos.router.breaker_states()[f"primary:{PRIMARY}"] == "unusable"
    await chaos.sim.set_knobs(fail_rate=1.0)
    turn = await run_turn(chaos.router)
    assert isinstance(turn.error, UpstreamUnavailable)
    assert chaos.requests("chat.completions") == 1  # never tried again
    await chaos.settled()
    await chaos.router.aclose()


@pytest.mark.parametrize("status", [401, 403])
async def test_an_auth_error_takes_the_target_out_then_one_probe_lets_it_back(
    upstream: RunningSim, exporter: InMemorySpanExporter, status: int
) -> None:
    clock = FakeClock()
    chat = [f"primary:{PRIMARY}", f"backup:{BACKUP}"]
    routes = {"chat": chat, "assess": [f"primary:{ASSESS}", f"backup:{BACKUP}"]}
    breaker = BreakerSettings(min_calls=50, auth_cooldown_s=300)
    chaos = make_chaos(upstream, exporter, routes=routes, breaker=breaker, clock=clock)
    await upstream.set_knobs(
        models={model: {"fail_rate": 1.0, "fail_status": status} for model in (PRIMARY, ASSESS)}
    )
    for _ in range(3):  # a burst of auth errors: the first takes the provider out
        turn = await run_turn(chaos.router)
        assert turn.target == f"backup:{BACKUP}" and turn.error is None
    assert chaos.requests("chat.completions") == 1
    states = chaos.router.breaker_states()
    assert states[f"primary:{PRIMARY}"] == states[f"primary:{ASSESS}"] == "unusable"

    clock.now += 300  # the cooldown passed, the key is still refused: one probe, out again
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "upstream_auth_failed", status)]
    assert chaos.requests("chat.completions") == 2
    clock.now += 299
    turn = await run_turn(chaos.router)
    assert turn.fallbacks == [Fallback(f"primary:{PRIMARY}", "target_unusable")]
    assert chaos.requests("chat.completions") == 2

    await upstream.set_knobs(models={})  # the key was rotated: the upstream accepts it
    clock.now += 1
    turn = await run_turn(chaos.router)
    assert turn.target == f"primary:{PRIMARY}" and turn.fallbacks == []
    assert chaos.router.breaker_states()[f"primary:{PRIMARY}"] == "closed"
    turn = await run_turn(chaos.router, "assess")  # the assessment route's own probe
    assert turn.target == f"primary:{ASSESS}" and turn.error is None
    assert chaos.router.breaker_states()[f"primary:{ASSESS}"] == "closed"
    assert chaos.requests("chat.completions") == 4
    await chaos.settled()
    await chaos.router.aclose()


async def test_every_target_skipped_is_no_route(
    upstream: RunningSim, exporter: InMemorySpanExporter
) -> None:
    await upstream.set_knobs(require_key="sk-only")
    chaos = make_chaos(upstream, exporter)
    first = await run_turn(chaos.router)
    assert isinstance(first.error, NoRouteAvailable)
    second = await run_turn(chaos.router)
    assert isinstance(second.error, NoRouteAvailable)
    assert "unusable" in second.error.message
    await chaos.settled()
    await chaos.router.aclose()


def test_routes_must_name_configured_providers(upstream: RunningSim) -> None:
    settings = Settings(
        sim_url=upstream.url,
        providers={"primary": ProviderConfig(kind="sim")},
        routes={"chat": ["primary:gpt-4o-mini", "nope:gpt-4o"]},
    )
    with pytest.raises(ValueError, match="'nope', which is not configured"):
        build_router(settings)
