"""Router: failover order, retries with backoff, deadlines, breakers, budgets, spans.

The providers here are small scripted `ChatProvider`s (real async generators); the chaos tests
drive the real adapters against the simulated upstream.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import use_span

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Message, Usage
from providers.errors import (
    AuthenticationFailed,
    BadRequest,
    NoRouteAvailable,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.resilience import (
    BreakerConfig,
    DailyBudget,
    DeadlineConfig,
    Price,
    PriceTable,
    Reachability,
    RetryConfig,
)
from providers.routing import Fallback, RoutedStream, Router, Target
from tests.conftest import eventually

REQUEST = ChatRequest(model="", messages=(Message("user", "hi"),))
USAGE = Usage(input_tokens=1000, output_tokens=500)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Step:
    """What one call does: fail or hang before the first chunk, then stream, then maybe fail."""

    error: ProviderError | None = None
    hang_s: float = 0.0
    slow_s: float = 0.0  # fake-clock seconds before the first chunk
    chunks: tuple[str, ...] = ("Hello", " there")
    error_after: ProviderError | None = None
    stall_s: float = 0.0
    finish: bool = True


@dataclass
class Scripted(ChatProvider):
    name: str
    steps: list[Step] = field(default_factory=list)
    kind: str = "openai"
    clock: FakeClock | None = None
    calls: list[str] = field(default_factory=list)
    closed_streams: int = 0
    closed: bool = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.calls.append(request.model)
        step = self.steps.pop(0) if self.steps else Step()
        try:
            if step.hang_s:
                await asyncio.sleep(step.hang_s)
            if step.error is not None:
                raise step.error
            if step.slow_s and self.clock is not None:
                self.clock.now += step.slow_s
            for i, text in enumerate(step.chunks):
                if i == 1 and step.stall_s:
                    await asyncio.sleep(step.stall_s)
                yield ChatChunk(text=text, model=f"{request.model}-2024")
            if step.error_after is not None:
                raise step.error_after
            if step.finish:
                yield ChatChunk(usage=USAGE, finish_reason="stop")
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        self.closed = True


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def make_router(
    providers: Sequence[Scripted],
    routes: dict[str, list[str]] | None = None,
    **kwargs: object,
) -> Router:
    routes = routes or {"chat": ["a:m1", "b:m2"]}
    options: dict[str, object] = {
        "retry": RetryConfig(attempts_per_target=2, base_delay_s=0.1, max_delay_s=1.0),
        "deadlines": DeadlineConfig(first_token_s=1.0, stall_s=1.0),
        "rng": random.Random(7),
        **kwargs,
    }
    return Router(
        {p.name: p for p in providers},
        {name: [Target.parse(spec) for spec in specs] for name, specs in routes.items()},
        **options,  # type: ignore[arg-type]
    )


async def drain(routed: RoutedStream) -> str:
    try:
        return "".join([chunk.text async for chunk in routed])
    finally:
        await routed.aclose()


def unavailable() -> UpstreamUnavailable:
    return UpstreamUnavailable("upstream 500", status=500)


async def test_first_target_answers() -> None:
    a, b = Scripted("a"), Scripted("b")
    routed = await make_router([a, b]).open_stream("chat", REQUEST)
    assert routed.target == Target("a", "m1")
    assert routed.fallbacks == []
    assert await drain(routed) == "Hello there"
    assert routed.usage == USAGE and routed.finish_reason == "stop"
    assert a.calls == ["m1"] and b.calls == []


async def test_retries_then_fails_over_in_order(sleeps: Sleeps) -> None:
    a = Scripted("a", [Step(error=unavailable()), Step(error=unavailable())])
    b = Scripted("b")
    routed = await make_router([a, b], sleep=sleeps).open_stream("chat", REQUEST)
    assert routed.target == Target("b", "m2")
    assert routed.fallbacks == [Fallback("a:m1", "upstream_unavailable", 500)]
    assert a.calls == ["m1", "m1"] and b.calls == ["m2"]
    assert len(sleeps.delays) == 1 and 0.05 <= sleeps.delays[0] <= 0.1
    assert a.closed_streams == 2
    await drain(routed)


async def test_backoff_grows_with_jitter(sleeps: Sleeps) -> None:
    a = Scripted("a", [Step(error=unavailable()) for _ in range(3)])
    retry = RetryConfig(attempts_per_target=4, base_delay_s=0.1, max_delay_s=0.3)
    routed = await make_router([a], {"chat": ["a:m1"]}, retry=retry, sleep=sleeps).open_stream(
        "chat", REQUEST
    )
    assert routed.fallbacks == [] and len(a.calls) == 4
    low_high = [(0.05, 0.1), (0.1, 0.2), (0.15, 0.3)]  # capped at max_delay
    assert [lo <= d <= hi for d, (lo, hi) in zip(sleeps.delays, low_high, strict=True)] == [
        True
    ] * 3
    await drain(routed)


async def test_long_retry_after_fails_over_without_retrying(sleeps: Sleeps) -> None:
    a = Scripted("a", [Step(error=RateLimited("429", status=429, retry_after_s=30))])
    b = Scripted("b")
    routed = await make_router([a, b], sleep=sleeps).open_stream("chat", REQUEST)
    assert a.calls == ["m1"] and sleeps.delays == []
    assert routed.fallbacks == [Fallback("a:m1", "upstream_rate_limited", 429)]
    await drain(routed)


async def test_bad_request_is_raised_without_failover() -> None:
    a = Scripted("a", [Step(error=BadRequest("bad", status=400))])
    b = Scripted("b")
    with pytest.raises(BadRequest):
        await make_router([a, b]).open_stream("chat", REQUEST)
    assert a.calls == ["m1"] and b.calls == []


async def test_auth_failure_makes_every_target_of_the_provider_unusable() -> None:
    a = Scripted("a", [Step(error=AuthenticationFailed("401", status=401))])
    b = Scripted("b")
    router = make_router([a, b], {"chat": ["a:m1", "b:m2"], "assess": ["a:m3", "b:m2"]})
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "upstream_auth_failed", 401)]
    await drain(routed)
    assert router.breaker_states()["a:m1"] == "unusable"
    assert router.breaker_states()["a:m3"] == "unusable"
    routed = await router.open_stream("assess", REQUEST)
    assert routed.fallbacks == [Fallback("a:m3", "target_unusable")]
    assert a.calls == ["m1"]
    await drain(routed)


async def test_after_the_auth_cooldown_one_probe_lets_a_rotated_key_back() -> None:
    clock = FakeClock()
    a = Scripted("a", [Step(error=AuthenticationFailed("401", status=401))])
    b = Scripted("b")
    breaker = BreakerConfig(auth_cooldown_s=300)
    router = make_router(
        [a, b], {"chat": ["a:m1", "b:m2"], "assess": ["a:m3"]}, breaker=breaker, clock=clock
    )
    await drain(await router.open_stream("chat", REQUEST))
    clock.now += 299
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "target_unusable")]
    await drain(routed)
    with pytest.raises(
        NoRouteAvailable, match=r"a:m3: unusable \(authentication failed\), probe in 1s"
    ):
        await router.open_stream("assess", REQUEST)
    clock.now += 1
    routed = await router.open_stream("chat", REQUEST)  # the probe: the key works now
    assert routed.target == Target("a", "m1") and routed.fallbacks == []
    await drain(routed)
    assert router.breaker_states() == {"a:m1": "closed", "b:m2": "closed", "a:m3": "half_open"}
    routed = await router.open_stream("assess", REQUEST)  # the assess target's own probe
    assert routed.target == Target("a", "m3")
    await drain(routed)
    assert router.breaker_states()["a:m3"] == "closed"
    assert a.calls == ["m1", "m1", "m3"]


async def test_an_auth_failure_of_the_probe_keeps_the_target_out_another_cooldown() -> None:
    clock = FakeClock()
    auth = AuthenticationFailed("401", status=401)
    a = Scripted("a", [Step(error=auth), Step(error=auth)])
    b = Scripted("b")
    router = make_router([a, b], breaker=BreakerConfig(auth_cooldown_s=300), clock=clock)
    await drain(await router.open_stream("chat", REQUEST))
    clock.now += 300
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "upstream_auth_failed", 401)]
    await drain(routed)
    assert router.breaker_states()["a:m1"] == "unusable"
    clock.now += 299
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "target_unusable")]
    await drain(routed)
    assert a.calls == ["m1", "m1"]


async def test_route_status_names_what_keeps_each_target_out() -> None:
    clock = FakeClock()
    a = Scripted("a", [Step(error=AuthenticationFailed("401", status=401))])
    b = Scripted("b", [Step(error=unavailable())])
    breaker = BreakerConfig(min_calls=1, cooldown_s=10, auth_cooldown_s=300)
    retry = RetryConfig(attempts_per_target=1)
    router = make_router(
        [a, b],
        {"chat": ["a:m1", "b:m2"], "assess": ["b:m2"]},
        breaker=breaker,
        retry=retry,
        clock=clock,
    )
    statuses = await router.route_status()
    assert statuses["chat"].usable == ("a:m1", "b:m2") and not statuses["chat"].is_out
    with pytest.raises(ProviderError):
        await router.open_stream("chat", REQUEST)
    statuses = await router.route_status()
    assert statuses["chat"].is_out and statuses["assess"].is_out
    assert statuses["chat"].out == {
        "a:m1": "unusable (authentication failed), probe in 300s",
        "b:m2": "circuit open for 10.0s",
    }
    clock.now += 10
    statuses = await router.route_status()  # half-open: a probe may go through
    assert statuses["chat"].usable == ("b:m2",) and statuses["assess"].usable == ("b:m2",)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_target_whose_address_refuses_connections_is_out_until_it_accepts() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    listening = server.sockets[0].getsockname()[1]
    refusing = closed_port()
    clock = FakeClock()
    addresses = {"a": ("127.0.0.1", refusing), "b": ("127.0.0.1", listening)}
    reach = Reachability(addresses, ttl_s=5, timeout_s=1, clock=clock)
    router = make_router([Scripted("a"), Scripted("b")], reachability=reach)
    status = (await router.route_status())["chat"]
    assert status.usable == ("b:m2",)
    assert status.out == {
        "a:m1": f"unreachable: nothing accepts connections at 127.0.0.1:{refusing}"
    }
    server.close()
    await server.wait_closed()
    assert (await router.route_status())["chat"].usable == ("b:m2",)  # the answer is kept
    clock.now += 5
    assert (await router.route_status())["chat"].is_out
    await router.aclose()


async def test_callers_that_ask_at_once_share_one_check() -> None:
    connects = 0

    def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connects
        connects += 1
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reach = Reachability({"a": ("127.0.0.1", port), "b": ("127.0.0.1", port)})
    answers = await asyncio.gather(*(reach.unreachable() for _ in range(5)))
    assert answers == [{}] * 5
    await eventually(lambda: connects > 0)  # the server's side of the connect runs later
    server.close()
    await server.wait_closed()
    assert connects == 1  # one address, one check, one connection
    await reach.aclose()


async def test_no_failover_after_the_first_chunk() -> None:
    a = Scripted("a", [Step(error_after=unavailable())])
    b = Scripted("b")
    router = make_router([a, b], breaker=BreakerConfig(min_calls=1, failure_rate=0.5))
    routed = await router.open_stream("chat", REQUEST)
    seen: list[str] = []
    with pytest.raises(UpstreamUnavailable):
        async for chunk in routed:
            seen.append(chunk.text)
    await routed.aclose()
    assert seen == ["Hello", " there"]
    assert b.calls == []
    assert router.breaker_states()["a:m1"] == "open"  # a mid-stream failure counts


async def test_a_missed_first_token_deadline_fails_over_without_a_retry() -> None:
    a = Scripted("a", [Step(hang_s=5), Step(hang_s=5)])
    b = Scripted("b")
    deadlines = DeadlineConfig(first_token_s=0.05, stall_s=1.0)
    sleeps = Sleeps()
    routed = await make_router([a, b], deadlines=deadlines, sleep=sleeps).open_stream(
        "chat", REQUEST
    )
    assert routed.fallbacks == [Fallback("a:m1", "upstream_timeout")]
    assert a.calls == ["m1"] and a.closed_streams == 1
    assert sleeps.delays == []  # no backoff either: the next target at once
    await drain(routed)


async def test_a_retry_that_could_not_begin_before_the_deadline_is_not_made() -> None:
    # The backoff (at least half of base_delay_s) is past the target's first-token deadline.
    a = Scripted("a", [Step(error=unavailable()), Step()])
    b = Scripted("b")
    retry = RetryConfig(attempts_per_target=2, base_delay_s=0.2, max_delay_s=1.0)
    deadlines = DeadlineConfig(first_token_s=0.1, stall_s=1.0)
    sleeps = Sleeps()
    router = make_router([a, b], retry=retry, deadlines=deadlines, sleep=sleeps)
    routed = await router.open_stream("chat", REQUEST)
    assert routed.target == Target("b", "m2")
    assert routed.fallbacks == [Fallback("a:m1", "upstream_unavailable", 500)]
    assert a.calls == ["m1"] and sleeps.delays == []
    await drain(routed)


async def test_every_target_hanging_ends_with_a_timeout_after_one_attempt_each() -> None:
    a = Scripted("a", [Step(hang_s=5)])
    b = Scripted("b", [Step(hang_s=5)])
    deadlines = DeadlineConfig(first_token_s=0.05, stall_s=1.0)
    with pytest.raises(UpstreamTimeout) as caught:
        await make_router([a, b], deadlines=deadlines, sleep=Sleeps()).open_stream("chat", REQUEST)
    assert "no first token within 0.05s" in caught.value.message
    assert a.calls == ["m1"] and b.calls == ["m2"]


async def test_stall_deadline_ends_the_stream() -> None:
    a = Scripted("a", [Step(stall_s=5)])
    deadlines = DeadlineConfig(first_token_s=1.0, stall_s=0.05)
    routed = await make_router([a], {"chat": ["a:m1"]}, deadlines=deadlines).open_stream(
        "chat", REQUEST
    )
    with pytest.raises(UpstreamTimeout):
        await drain(routed)
    assert a.closed_streams == 1


async def test_stream_without_finish_reason_is_interrupted() -> None:
    a = Scripted("a", [Step(finish=False)])
    routed = await make_router([a], {"chat": ["a:m1"]}).open_stream("chat", REQUEST)
    with pytest.raises(StreamInterrupted):
        await drain(routed)


async def test_empty_stream_fails_over() -> None:
    a = Scripted("a", [Step(chunks=(), finish=False), Step(chunks=(), finish=False)])
    b = Scripted("b")
    routed = await make_router([a, b], sleep=Sleeps()).open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "stream_interrupted")]
    await drain(routed)


async def test_open_circuit_is_skipped_until_cooldown() -> None:
    clock = FakeClock()
    a = Scripted("a", [Step(error=unavailable())])
    b = Scripted("b")
    breaker = BreakerConfig(min_calls=1, failure_rate=0.5, cooldown_s=10)
    router = make_router([a, b], breaker=breaker, clock=clock, sleep=Sleeps())
    await drain(await router.open_stream("chat", REQUEST))
    assert a.calls == ["m1"]  # the circuit opened after the first failure: no retry
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "circuit_open")]
    assert a.calls == ["m1"]
    await drain(routed)
    clock.now += 10
    routed = await router.open_stream("chat", REQUEST)  # the half-open probe
    assert routed.target == Target("a", "m1")
    assert router.breaker_states()["a:m1"] == "half_open"
    await drain(routed)
    assert router.breaker_states()["a:m1"] == "closed"  # success recorded at the end


async def test_slow_first_token_counts_and_ttft_is_measured() -> None:
    clock = FakeClock()
    a = Scripted("a", [Step(slow_s=2.0)], clock=clock)
    breaker = BreakerConfig(min_calls=1, slow_ttft_ms=1000)
    router = make_router([a], {"chat": ["a:m1"]}, breaker=breaker, clock=clock)
    routed = await router.open_stream("chat", REQUEST)
    assert routed.upstream_ttft_ms == pytest.approx(2000)
    assert await drain(routed) == "Hello there"  # the answer itself still goes through
    assert router.breaker_states()["a:m1"] == "open"


async def test_every_target_failing_raises_the_last_transient_error() -> None:
    a = Scripted("a", [Step(error=unavailable())])
    b = Scripted("b", [Step(error=RateLimited("429", status=429, retry_after_s=60))])
    router = make_router([a, b], retry=RetryConfig(attempts_per_target=1))
    with pytest.raises(RateLimited) as caught:
        await router.open_stream("chat", REQUEST)
    notes = " ".join(caught.value.__notes__)
    assert "a:m1: upstream_unavailable" in notes and "b:m2: upstream_rate_limited" in notes


async def test_every_target_skipped_raises_no_route_available() -> None:
    clock = FakeClock()
    a = Scripted("a", [Step(error=unavailable())])
    b = Scripted("b", [Step(error=AuthenticationFailed("401", status=401))])
    breaker = BreakerConfig(min_calls=1, cooldown_s=30)
    router = make_router([a, b], breaker=breaker, clock=clock)
    with pytest.raises(NoRouteAvailable) as caught:  # last error was the (permanent) 401
        await router.open_stream("chat", REQUEST)
    with pytest.raises(NoRouteAvailable) as caught:
        await router.open_stream("chat", REQUEST)
    assert "a:m1: circuit open" in str(caught.value)
    assert "b:m2: unusable" in str(caught.value)
    assert caught.value.retry_after_s == pytest.approx(30)


async def test_unknown_route_and_model_filter() -> None:
    router = make_router([Scripted("a"), Scripted("b")])
    with pytest.raises(NoRouteAvailable):
        await router.open_stream("nope", REQUEST)
    with pytest.raises(NoRouteAvailable):
        await router.open_stream("chat", REQUEST, model="m9")
    routed = await router.open_stream("chat", REQUEST, model="m2")
    assert routed.target == Target("b", "m2")
    await drain(routed)


def test_routes_must_name_known_providers() -> None:
    with pytest.raises(ValueError, match="unknown provider"):
        make_router([Scripted("a")], {"chat": ["a:m1", "zzz:m2"]})


class MemoryStore:
    def __init__(self, loaded: dict[str, float]) -> None:
        self.loaded = loaded
        self.added: list[tuple[dt.date, str, float]] = []

    async def load(self, day: dt.date) -> dict[str, float]:
        return dict(self.loaded)

    async def add(self, day: dt.date, target: str, usd: float) -> None:
        self.added.append((day, target, usd))


async def test_cost_and_daily_budget_routes_to_the_next_target() -> None:
    day = dt.date(2025, 1, 2)
    store = MemoryStore({})
    budget = DailyBudget({"a": 0.004}, store=store, today=lambda: day)
    prices = PriceTable({"m1": Price(input_per_mtok=2.0, output_per_mtok=4.0)})
    router = make_router([Scripted("a"), Scripted("b")], budget=budget, prices=prices)
    routed = await router.open_stream("chat", REQUEST)
    await drain(routed)
    # priced by the dated response model "m1-2024" through the "m1" prefix
    assert routed.cost_usd == pytest.approx(1000 * 2 / 1e6 + 500 * 4 / 1e6)
    [(added_day, added_target, added_usd)] = store.added
    assert (added_day, added_target) == (day, "a:m1") and added_usd == pytest.approx(0.004)
    routed = await router.open_stream("chat", REQUEST)
    assert routed.fallbacks == [Fallback("a:m1", "over_budget")]
    assert routed.target == Target("b", "m2")
    await drain(routed)
    assert router.spend_today() == {"a:m1": pytest.approx(0.004)}


async def test_budget_spent_by_other_processes_is_loaded() -> None:
    today = {"day": dt.date(2025, 1, 2)}
    store = MemoryStore({"a:m1": 5.0})
    budget = DailyBudget({"a:m1": 1.0}, store=store, today=lambda: today["day"])
    router = make_router([Scripted("a"), Scripted("b")], budget=budget)
    routed = await router.open_stream("chat", REQUEST)
    assert routed.target == Target("b", "m2")
    await drain(routed)
    today["day"] = dt.date(2025, 1, 3)
    store.loaded = {}
    routed = await router.open_stream("chat", REQUEST)  # a new day: budget available again
    assert routed.target == Target("a", "m1")
    await drain(routed)


async def test_closing_early_releases_without_counting_a_failure() -> None:
    a = Scripted("a", [Step(chunks=("a", "b", "c"))])
    router = make_router([a], {"chat": ["a:m1"]}, breaker=BreakerConfig(min_calls=1))
    routed = await router.open_stream("chat", REQUEST)
    async for _ in routed:
        break
    await routed.aclose()
    assert a.closed_streams == 1
    assert router.breaker_states()["a:m1"] == "closed"


async def test_cancelled_while_waiting_for_first_token() -> None:
    a = Scripted("a", [Step(hang_s=5)])
    router = make_router([a], {"chat": ["a:m1"]}, breaker=BreakerConfig(min_calls=1))
    task = asyncio.create_task(router.open_stream("chat", REQUEST))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.closed_streams == 1
    assert router.breaker_states()["a:m1"] == "closed"


async def test_breaker_listeners_hear_state_changes() -> None:
    a = Scripted("a", [Step(error=unavailable())])
    router = make_router([a, Scripted("b")], breaker=BreakerConfig(min_calls=1))
    heard: list[tuple[str, str, str]] = []
    router.add_breaker_listener(lambda *change: heard.append(change))
    await drain(await router.open_stream("chat", REQUEST))
    assert heard == [("a:m1", "closed", "open")]


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def test_attempt_spans_and_route_events(
    tracer_provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    a = Scripted("a", [Step(error=unavailable())], kind="openai")
    b = Scripted("b", kind="anthropic")
    router = make_router(
        [a, b], retry=RetryConfig(attempts_per_target=1), tracer_provider=tracer_provider
    )
    turn = tracer_provider.get_tracer("test").start_span("turn")
    with use_span(turn, end_on_exit=True):
        routed = await router.open_stream("chat", REQUEST)
    assert spans_named(exporter, "chat m2") == []  # still streaming: not ended yet
    await drain(routed)

    (failed,) = spans_named(exporter, "chat m1")
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "upstream_unavailable"
    assert failed.parent is not None and failed.parent.span_id == turn.get_span_context().span_id

    (ok,) = spans_named(exporter, "chat m2")
    attrs = dict(ok.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "m2"
    assert attrs["gen_ai.response.model"] == "m2-2024"
    assert attrs["gen_ai.usage.input_tokens"] == 1000
    assert attrs["gen_ai.usage.output_tokens"] == 500
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert isinstance(attrs["gen_ai.server.time_to_first_token"], float)

    (turn_span,) = spans_named(exporter, "turn")
    events = [(e.name, dict(e.attributes or {})) for e in turn_span.events]
    assert (
        "coach.route.fallback",
        {"target": "a:m1", "error.type": "upstream_unavailable", "status": 500},
    ) in events


async def test_aclose_closes_providers() -> None:
    a, b = Scripted("a"), Scripted("b")
    await make_router([a, b]).aclose()
    assert a.closed and b.closed
