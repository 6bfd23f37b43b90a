"""Live coaching: practice metrics pushed into a session, a short corrective tip back.

Metrics convention: every metric is a score where higher is better, either in 0..1 or in
0..100 (a value above 1 is read as a percentage). The weakest metric is the one with the lowest
score on that common 0..1 scale (ties: the first name in alphabetical order).

Each push is recorded (the last `history` pushes per session, at most `max_sessions` sessions,
least recently active forgotten first) and published to the session's live feed as `metrics`.
At most once per `interval_s` per session, a tip is generated on the `chat` route and handed as
`coaching.feedback` to `deliver`, which pushes it to the session's connections and its feed (the
coach does not publish it too: each tip would be in the feed twice). Tips run as tasks of the
coach's own `TaskGroup`: at most one in flight per session and `max_in_flight` overall; a push
that finds no free slot schedules nothing (the next push after the interval tries again).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from opentelemetry import trace

from providers.chat import ChatRequest, Message
from providers.errors import ProviderError
from providers.routing import Router
from streams.events import CoachingFeedback, ServerEvent
from streams.hub import Hub

__all__ = ["Coach", "open_coach", "weakest_metric"]

log = logging.getLogger("coach.coaching")
tracer = trace.get_tracer("coach.streams")

# Pushes an event to a session's connections and its live feed.
Deliver = Callable[[str, ServerEvent], None]
Outcome = Callable[[str], None]

SYSTEM = (
    "You are a live practice coach. Answer with one short, concrete corrective tip "
    "(one or two sentences) for the weakest area. No preamble."
)
MAX_METRIC_NAMES = 64


def _score(value: float) -> float:
    return value / 100 if value > 1 else value


def weakest_metric(metrics: dict[str, float]) -> str:
    """The metric with the lowest normalised score (see the module docstring)."""
    return min(sorted(metrics), key=lambda name: _score(metrics[name]))


@dataclass(slots=True)
class _SessionMetrics:
    user_id: str
    latest: dict[str, float] = field(default_factory=dict)
    pushes: deque[tuple[float, dict[str, float]]] = field(default_factory=lambda: deque(maxlen=32))
    last_tip_at: float | None = None
    tip_running: bool = False


class Coach:
    """Records pushed metrics and schedules tips; build it with `open_coach`."""

    def __init__(
        self,
        router: Router,
        hub: Hub,
        deliver: Deliver,
        tasks: asyncio.TaskGroup,
        *,
        interval_s: float,
        route: str = "chat",
        max_in_flight: int = 8,
        history: int = 32,
        max_sessions: int = 4096,
        tip_timeout_s: float = 20.0,
        max_tokens: int = 80,
        clock: Callable[[], float] = time.monotonic,
        on_outcome: Outcome | None = None,
    ) -> None:
        self._router = router
        self._hub = hub
        self._deliver = deliver
        self._tasks = tasks
        self._interval_s = interval_s
        self._route = route
        self._max_in_flight = max_in_flight
        self._history = history
        self._max_sessions = max_sessions
        self._tip_timeout_s = tip_timeout_s
        self._max_tokens = max_tokens
        self._clock = clock
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._sessions: OrderedDict[str, _SessionMetrics] = OrderedDict()
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    def push(self, session_id: str, user_id: str, metrics: dict[str, float]) -> bool:
        """Record `metrics` for the session; True if a tip was scheduled (never blocks)."""
        state = self._state(session_id, user_id)
        now = self._clock()
        state.pushes.append((now, dict(metrics)))
        for name, value in metrics.items():
            if name in state.latest or len(state.latest) < MAX_METRIC_NAMES:
                state.latest[name] = value
        self._hub.publish(session_id, user_id, "metrics", {"metrics": dict(metrics)})
        return self._maybe_tip(session_id, state, now)

    def latest(self, session_id: str) -> dict[str, float]:
        state = self._sessions.get(session_id)
        return dict(state.latest) if state is not None else {}

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def _state(self, session_id: str, user_id: str) -> _SessionMetrics:
        state = self._sessions.get(session_id)
        if state is None:
            state = _SessionMetrics(user_id, pushes=deque(maxlen=self._history))
            self._sessions[session_id] = state
            while len(self._sessions) > self._max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session_id)
        return state

    def _maybe_tip(self, session_id: str, state: _SessionMetrics, now: float) -> bool:
        if self._closed or state.tip_running or not state.latest:
            return False
        if state.last_tip_at is not None and now - state.last_tip_at < self._interval_s:
            return False
        if len(self._running) >= self._max_in_flight:
            self._on_outcome("skipped")
            return False
        state.last_tip_at = now
        state.tip_running = True
        task = self._tasks.create_task(self._tip(session_id, state, dict(state.latest)))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return True

    async def _tip(
        self, session_id: str, state: _SessionMetrics, metrics: dict[str, float]
    ) -> None:
        weakest = weakest_metric(metrics)
        try:
            with tracer.start_as_current_span(
                "coaching.tip", attributes={"coach.metric": weakest[:64]}
            ):
                async with asyncio.timeout(self._tip_timeout_s):
                    text = await self._generate(metrics, weakest)
        except (ProviderError, TimeoutError) as exc:
            log.warning("coaching tip failed", extra={"session_id": session_id, "error": str(exc)})
            self._on_outcome("failed")
            return
        except Exception:  # a tip must never take the coach's task group down
            log.exception("coaching tip crashed", extra={"session_id": session_id})
            self._on_outcome("failed")
            return
        finally:
            state.tip_running = False
        self._deliver(session_id, CoachingFeedback(text, weakest, metrics))
        self._on_outcome("sent")

    async def _generate(self, metrics: dict[str, float], weakest: str) -> str:
        listing = ", ".join(f"{name}={value:g}" for name, value in sorted(metrics.items()))
        prompt = (
            f"Live practice metrics (scores, higher is better): {listing}. "
            f"The weakest is {weakest}. Give one short tip to improve it."
        )
        request = ChatRequest(
            model="",
            messages=(Message("system", SYSTEM), Message("user", prompt)),
            max_tokens=self._max_tokens,
            request_id=f"coach_{uuid.uuid4().hex[:16]}",
        )
        routed = await self._router.open_stream(self._route, request)
        parts: list[str] = []
        try:
            async for chunk in routed:
                parts.append(chunk.text)
        finally:
            await routed.aclose()
        return "".join(parts).strip()

    def close(self) -> None:
        """Stop scheduling and cancel the tips in flight."""
        self._closed = True
        for task in list(self._running):
            task.cancel()


@asynccontextmanager
async def open_coach(
    router: Router,
    hub: Hub,
    deliver: Deliver,
    *,
    interval_s: float,
    max_in_flight: int = 8,
    clock: Callable[[], float] = time.monotonic,
    on_outcome: Outcome | None = None,
) -> AsyncIterator[Coach]:
    """A coach whose tips are tasks of a `TaskGroup` that lives as long as this block."""
    async with asyncio.TaskGroup() as tasks:
        coach = Coach(
            router,
            hub,
            deliver,
            tasks,
            interval_s=interval_s,
            max_in_flight=max_in_flight,
            clock=clock,
            on_outcome=on_outcome,
        )
        try:
            yield coach
        finally:
            coach.close()
