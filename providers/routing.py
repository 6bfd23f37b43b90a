"""Routes: ordered targets (provider, model) per purpose, with failover before the first token.

For each target of a route, in order, skipping those whose circuit is open, that are unusable or
whose daily budget is spent: try up to `attempts_per_target` times with jittered backoff, then
fail over. Once a first chunk arrived the `RoutedStream` is handed over and there is no more
failover: a later failure ends the stream with that error.

The first-token deadline (`DeadlineConfig.first_token_s`) is a target's, not an attempt's: its
attempts and the backoff between them all fit in it, a target that misses it is not retried
(the turn moves to the next target at once), and a retry that could not begin before it is not
made. So a turn waits for its first token at most `first_token_s` times the number of targets
tried. After the first chunk, the stall deadline (`stall_s`) bounds each wait for the next one:
the only stall deadline of a stream, whatever adapter serves it.

The native client asks for a JSON-schema answer unstreamed (its first chunk is all of it): for
any JSON-schema request the answer deadline (`answer_s`) takes the place of `first_token_s` in
every rule above, and the time to its first chunk is not held against the target as slow.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Usage
from providers.errors import (
    AuthenticationFailed,
    NoRouteAvailable,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.resilience.attempt import AttemptWatch
from providers.resilience.breaker import BreakerListener, BreakerState, Call, CircuitBreaker
from providers.resilience.budget import DailyBudget
from providers.resilience.config import (
    BreakerConfig,
    Clock,
    DeadlineConfig,
    RetryConfig,
    Sleep,
)
from providers.resilience.prices import PriceTable
from providers.resilience.reach import Reachability
from providers.resilience.retry import backoff_delay
from providers.resilience.stall import StallDeadline
from providers.resilience.telemetry import route_event, start_attempt_span

__all__ = ["Fallback", "RouteStatus", "RoutedStream", "Router", "Target"]

log = logging.getLogger("coach.router")


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str

    @classmethod
    def parse(cls, spec: str) -> Target:
        """`"primary:gpt-4o-mini"` -> Target("primary", "gpt-4o-mini")."""
        provider, sep, model = spec.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f"route target must be 'provider:model', got {spec!r}")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class Fallback:
    """A target given up on before the first token: failed (code of its last error, HTTP status)
    or skipped (`circuit_open`, `target_unusable`, `over_budget`)."""

    target: str
    code: str
    status: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "code": self.code, "status": self.status}


@dataclass(frozen=True, slots=True)
class RouteStatus:
    """Which targets of a route could take a turn now, and why each other one could not."""

    usable: tuple[str, ...]
    out: dict[str, str]  # target -> why it is out

    @property
    def is_out(self) -> bool:
        return not self.usable


@dataclass(slots=True)
class RoutedStream:
    """An upstream stream that has already produced its first chunk (failover is over).

    Iterate it once, and `aclose()` it when done or abandoned: the attempt's breaker outcome,
    span and cost are settled when the stream finishes, fails or is closed. A gap longer than the
    stall deadline between chunks raises `UpstreamTimeout`; an end without a finish reason raises
    `StreamInterrupted`. `usage`, `finish_reason`, `response_model` and `cost_usd` fill in as the
    chunks pass.
    """

    target: Target
    provider_kind: str
    fallbacks: list[Fallback]
    upstream_ttft_ms: float
    _first: ChatChunk
    _rest: AsyncIterator[ChatChunk]
    cost_usd: float = 0.0
    _closed: bool = field(default=False)
    usage: Usage | None = None
    finish_reason: str | None = None
    response_model: str | None = None
    _watch: AttemptWatch | None = None
    _stall: StallDeadline = field(default_factory=lambda: StallDeadline(None))

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        error: BaseException | None = None
        completed = False
        rest, stall = self._rest, self._stall
        try:
            chunk: ChatChunk | None = self._first
            while chunk is not None:
                self._observe(chunk)
                yield chunk
                # Inline, not a helper coroutine: this runs once per streamed chunk.
                try:
                    chunk = await stall.wait(anext(rest))
                except StopAsyncIteration:
                    chunk = None
                except TimeoutError as exc:
                    message = f"upstream stalled: {exc}"
                    raise UpstreamTimeout(message, provider=str(self.target)) from exc
            if self.finish_reason is None:
                raise StreamInterrupted(
                    "upstream stream ended without a finish reason", provider=str(self.target)
                )
            completed = True
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._settle(completed=completed, error=error)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await _close_quietly(self._rest)
            # A consumer that stops once the finish reason arrived has had a complete answer.
            await self._settle(completed=self.finish_reason is not None, error=None)

    def _observe(self, chunk: ChatChunk) -> None:
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
        if chunk.model:
            self.response_model = chunk.model

    async def _settle(self, *, completed: bool, error: BaseException | None) -> None:
        self._stall.close()
        if not completed:
            await _close_quietly(self._rest)
        if self._watch is not None:
            self.cost_usd = await self._watch.end(
                completed=completed,
                error=error,
                usage=self.usage,
                finish_reason=self.finish_reason,
                response_model=self.response_model,
            )


class _Skip(Exception):
    """A target not tried: its circuit is open, it is unusable, or its budget is spent."""

    def __init__(self, code: str, why: str) -> None:
        super().__init__(why)
        self.code = code
        self.why = why


class Router:
    """Opens a stream on the first healthy target of a route that answers."""

    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        routes: Mapping[str, Sequence[Target]],
        *,
        breaker: BreakerConfig | None = None,
        retry: RetryConfig | None = None,
        deadlines: DeadlineConfig | None = None,
        prices: PriceTable | None = None,
        budget: DailyBudget | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        tracer_provider: TracerProvider | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._routes = {name: list(targets) for name, targets in routes.items()}
        for name, targets in self._routes.items():
            for target in targets:
                if target.provider not in self._providers:
                    raise ValueError(f"route {name!r}: unknown provider in {str(target)!r}")
        self._retry = retry or RetryConfig()
        self._deadlines = deadlines or DeadlineConfig()
        self._prices = prices or PriceTable()
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._reach = reachability
        self._tracer = trace.get_tracer("coach.providers", tracer_provider=tracer_provider)
        self._listeners: list[BreakerListener] = []
        self._breakers = {
            str(target): CircuitBreaker(
                str(target), breaker, clock=clock, listeners=[self._on_breaker_change]
            )
            for targets in self._routes.values()
            for target in targets
        }

    def targets(self, route: str) -> list[Target]:
        return list(self._routes.get(route, []))

    def breaker_states(self) -> dict[str, str]:
        """Target -> "closed" | "open" | "half_open" | "unusable"."""
        return {name: breaker.state.value for name, breaker in self._breakers.items()}

    def add_breaker_listener(self, listener: BreakerListener) -> None:
        """Call `listener(target, old, new)` on every breaker state change."""
        self._listeners.append(listener)

    def reset_breaker(self, target: str) -> None:
        """Close a target's circuit and forget its history (e.g. after fixing its API key)."""
        self._breakers[target].reset()

    async def route_status(self) -> dict[str, RouteStatus]:
        """Per route, the targets that could take a turn now and why each other one cannot: its
        circuit open or unusable, its daily budget spent, or (with a `Reachability`) its
        address refusing connections. For readiness: off the turns' path, bounded and cached
        by `Reachability`."""
        unreachable = await self._reach.unreachable() if self._reach is not None else {}
        statuses: dict[str, RouteStatus] = {}
        for route, targets in self._routes.items():
            usable: list[str] = []
            out: dict[str, str] = {}
            for target in targets:
                why = self._out_reason(target, unreachable)
                if why is None:
                    usable.append(str(target))
                else:
                    out[str(target)] = why
            statuses[route] = RouteStatus(tuple(usable), out)
        return statuses

    def spend_today(self) -> dict[str, float]:
        """USD spent today per target (empty without a budget)."""
        return self._budget.snapshot() if self._budget is not None else {}

    async def open_stream(
        self, route: str, request: ChatRequest, *, model: str | None = None
    ) -> RoutedStream:
        """Open `request` on `route`; `model`, if set, keeps only targets serving that model."""
        targets = self._candidates(route, model)
        if self._budget is not None:
            await self._budget.refresh()
        fallbacks: list[Fallback] = []
        reasons: list[str] = []
        last_error: ProviderError | None = None
        for target in targets:
            try:
                return await self._open_target(target, request, fallbacks)
            except _Skip as skip:
                fallbacks.append(Fallback(str(target), skip.code))
                reasons.append(f"{target}: {skip.why}")
                route_event("coach.route.skip", {"target": str(target), "reason": skip.code})
            except ProviderError as exc:
                if not (exc.transient or isinstance(exc, AuthenticationFailed)):
                    raise
                last_error = exc
                fallbacks.append(Fallback(str(target), exc.code, exc.status))
                reasons.append(f"{target}: {exc.code} ({exc.message})")
                route_event(
                    "coach.route.fallback",
                    {"target": str(target), "error.type": exc.code, "status": exc.status},
                )
        raise self._exhausted(route, reasons, last_error)

    async def aclose(self) -> None:
        if self._reach is not None:
            await self._reach.aclose()
        for provider in self._providers.values():
            await provider.aclose()

    def _out_reason(self, target: Target, unreachable: Mapping[str, str]) -> str | None:
        name = str(target)
        if (why := _circuit_out(self._breakers[name])) is not None:
            return why
        if self._budget is not None and self._budget.exhausted(name):
            return "daily budget spent"
        if (problem := unreachable.get(target.provider)) is not None:
            return f"unreachable: {problem}"
        return None

    def _candidates(self, route: str, model: str | None) -> list[Target]:
        if route not in self._routes:
            raise NoRouteAvailable(f"unknown route {route!r}", provider=route)
        targets = [t for t in self._routes[route] if model is None or t.model == model]
        if not targets:
            raise NoRouteAvailable(f"route {route!r} has no target for model {model!r}")
        return targets

    async def _open_target(
        self, target: Target, request: ChatRequest, fallbacks: list[Fallback]
    ) -> RoutedStream:
        """Attempt `target` with retries within its first-token deadline; raises its last error,
        or `_Skip` if not tried."""
        breaker = self._breakers[str(target)]
        if self._budget is not None and (key := self._budget.exhausted(str(target))):
            raise _Skip("over_budget", f"daily budget of {key!r} spent")
        deadline = asyncio.get_running_loop().time() + self._first_chunk_limit(request)
        error: ProviderError | None = None
        for attempt in range(1, max(self._retry.attempts_per_target, 1) + 1):
            if error is not None:
                delay = self._retry_delay(error, attempt - 1, deadline)
                if delay is None:
                    break
                await self._backoff(target, attempt, delay)
            call = breaker.try_acquire()
            if call is None:
                if error is not None:
                    break  # our own failures opened the circuit: fail over
                raise self._skip_for(breaker)
            try:
                return await self._attempt(
                    target, request, fallbacks, breaker, call, attempt, deadline
                )
            except ProviderError as exc:
                if not exc.transient:
                    raise
                error = exc
        assert error is not None
        raise error

    async def _attempt(
        self,
        target: Target,
        request: ChatRequest,
        fallbacks: list[Fallback],
        breaker: CircuitBreaker,
        call: Call,
        attempt: int,
        deadline: float,
    ) -> RoutedStream:
        """One call: wait for its first chunk until the target's `deadline` (event-loop time),
        then hand the stream over."""
        provider = self._providers[target.provider]
        request = replace(request, model=target.model)
        span = start_attempt_span(
            self._tracer, target=str(target), kind=provider.kind, request=request, attempt=attempt
        )
        watch = AttemptWatch(
            str(target), target.model, breaker, call, span, self._prices, self._budget
        )
        stream: AsyncIterator[ChatChunk] | None = None
        try:
            with trace.use_span(span, end_on_exit=False):
                stream = provider.stream(request)
                async with asyncio.timeout_at(deadline):
                    # upstream_ttft_ms: from the first `anext` on the adapter's stream to the
                    # first chunk that carries something (`_first_chunk`). Adapters are async
                    # generators, so `provider.stream()` does nothing and this `anext` is where
                    # the request is built and sent; our part of it is building the request
                    # (without the SDK's typed transforms, which cost far more). The rest is
                    # connection setup, the upstream's own time to first token, and any delay
                    # of our event loop in reading the response.
                    started = self._clock()
                    first = await _first_chunk(stream)
        except BaseException as exc:
            error = self._first_token_error(exc, target, request)
            if stream is not None:
                await _close_quietly(stream)
            await watch.end(error=error or exc)
            if error is None or error is exc:
                raise
            raise error from exc
        ttft_ms = (self._clock() - started) * 1000
        if request.json_schema is None:  # a whole answer's time is no first token's
            watch.first_token(ttft_ms)
        return RoutedStream(
            target,
            provider.kind,
            fallbacks,
            ttft_ms,
            first,
            stream,
            _watch=watch,
            _stall=StallDeadline(self._deadlines.stall_s),
        )

    def _first_chunk_limit(self, request: ChatRequest) -> float:
        """How long a target may take to its first chunk: a JSON-schema answer's is all of it."""
        if request.json_schema is not None:
            return self._deadlines.answer_s
        return self._deadlines.first_token_s

    def _first_token_error(
        self, exc: BaseException, target: Target, request: ChatRequest
    ) -> ProviderError | None:
        """The provider error an attempt ended with before its first chunk (None: cancelled)."""
        name = str(target)
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, StopAsyncIteration):
            return StreamInterrupted("upstream stream ended before its first chunk", provider=name)
        if isinstance(exc, TimeoutError):
            limit = self._first_chunk_limit(request)
            what = "answer" if request.json_schema is not None else "first token"
            return UpstreamTimeout(f"no {what} within {limit}s", provider=name)
        if isinstance(exc, Exception):
            # An adapter let a foreign error through: treat it as an upstream failure so the
            # route still fails over, and log it so the adapter gets fixed.
            log.error("adapter raised a non-provider error", exc_info=exc, extra={"target": name})
            return UpstreamUnavailable(f"{type(exc).__name__}: {exc}", provider=name)
        return None

    def _retry_delay(self, error: ProviderError, retry: int, deadline: float) -> float | None:
        """The backoff before retry number `retry` after `error`, or None to fail over now: after
        a timeout (the target had its time), when the upstream asks us to wait longer than our
        backoff would, or when the retry could not begin before the target's deadline."""
        if isinstance(error, UpstreamTimeout):
            return None
        wait = error.retry_after_s if isinstance(error, RateLimited) else None
        if wait is not None and wait > self._retry.max_delay_s:
            return None
        delay = backoff_delay(retry, self._retry, self._rng)
        if asyncio.get_running_loop().time() + delay >= deadline:
            return None
        return delay

    async def _backoff(self, target: Target, attempt: int, delay: float) -> None:
        route_event(
            "coach.route.retry", {"target": str(target), "attempt": attempt, "delay_s": delay}
        )
        await self._sleep(delay)

    @staticmethod
    def _skip_for(breaker: CircuitBreaker) -> _Skip:
        state = breaker.state
        code = "target_unusable" if state is BreakerState.UNUSABLE else "circuit_open"
        return _Skip(code, _circuit_out(breaker) or "circuit half-open, probes in flight")

    def _exhausted(
        self, route: str, reasons: list[str], last_error: ProviderError | None
    ) -> ProviderError:
        message = f"no target of route {route!r} answered: " + "; ".join(reasons)
        if last_error is not None and last_error.transient:
            last_error.add_note(message)
            return last_error
        waits = [
            wait
            for name in {str(t) for t in self._routes[route]}
            if (wait := self._breakers[name].retry_after_s()) is not None
        ]
        return NoRouteAvailable(message, provider=route, retry_after_s=min(waits, default=None))

    def _on_breaker_change(self, target: str, old: str, new: str) -> None:
        route_event("coach.breaker.state", {"target": target, "old": old, "new": new})
        if new == BreakerState.UNUSABLE:
            self._mark_provider_unusable(target.partition(":")[0])
        for listener in list(self._listeners):
            try:
                listener(target, old, new)
            except Exception:  # a broken listener must not break routing
                log.exception("breaker listener failed", extra={"target": target})

    def _mark_provider_unusable(self, provider: str) -> None:
        # Credentials belong to the provider account, so every target of it is unusable.
        for name, breaker in self._breakers.items():
            if name.partition(":")[0] == provider:
                breaker.mark_unusable("provider authentication failed")


def _circuit_out(breaker: CircuitBreaker) -> str | None:
    """Why a target's circuit keeps every call out (open or unusable), or None."""
    state = breaker.state
    if state is BreakerState.UNUSABLE:
        return f"unusable (authentication failed), probe in {breaker.retry_after_s() or 0:.0f}s"
    if state is BreakerState.OPEN:
        return f"circuit open for {breaker.retry_after_s() or 0:.1f}s"
    return None


async def _first_chunk(stream: AsyncIterator[ChatChunk]) -> ChatChunk:
    """The first chunk that carries something: an empty one (a role delta) is no first token."""
    while True:
        chunk = await anext(stream)
        if chunk.text or chunk.usage is not None or chunk.finish_reason is not None:
            return chunk


async def _close_quietly(stream: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except RuntimeError:
        pass  # closed from another task while it runs: the running task will end it
    except ProviderError as exc:
        log.debug("error while closing an upstream stream", exc_info=exc)
