"""Observability wiring: tracing, Prometheus metrics, request context, live feeds and coaching.

The app factory calls `middleware(settings)`, `observability_routes()` and, in its lifespan,
`open_observability(gateway, stack)`, and wraps each WebSocket/SSE session in `session_span`.
What the gateway then holds in `gateway.observability` is an `Observability`: `hub` (live
feeds), `metrics` (`GatewayMetrics`: also `observe_stt`, `observe_tts`, `observe_assess_job`
for the voice and assessment code), `coach` (live coaching) and `deliver(session_id, event)`
(push to the session's connections *and* its feed; use it for `assessment.created`).

With `redis_url` the hub's session feeds and the ops snapshots are shared with the other
replicas (`gateway.replicas`; `replicas` holds the link): `snapshot()` is this replica's figures
(`local_snapshot()`) plus every replica's rows and their totals (`gateway.ops_snapshots`).

Read defensively from other components at scrape/snapshot time: `gateway.router.breaker_states()`,
`gateway.quotas.rejections()`, and from `gateway.persistence.pipeline` (when present)
`queue_depth` (int or callable; else `_queue.qsize()`) and `stats.{done, failed, retried, lost}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import metrics as m
from gateway.feeds import feed_routes
from gateway.metrics import GatewayMetrics
from gateway.middleware import RequestContextMiddleware
from gateway.ops_snapshots import cluster_view
from gateway.replicas import Replicas, open_replicas, replica_name
from gateway.runtime import Gateway, gateway_of
from gateway.settings import Settings
from gateway.telemetry import attach_exporter, otlp_exporter, session_span
from streams.coaching import Coach, open_coach
from streams.events import ServerEvent
from streams.hub import Hub
from streams.records import TurnRecord
from streams.session import LiveSession

__all__ = [
    "Observability",
    "middleware",
    "observability_routes",
    "open_observability",
    "session_span",
]

log = logging.getLogger("coach.observability")

_JOB_OUTCOMES = ("done", "failed", "retried", "lost")
LOOP_PROBE_S = 0.25  # how often the event-loop lag is read (four timers a second: no cost)


def middleware(settings: Settings) -> list[Middleware]:
    """Request id, trace context from `traceparent`, one access log line per request."""
    return [Middleware(RequestContextMiddleware, sample_interval_s=settings.log_sample_interval_s)]


async def metrics_endpoint(request: Request) -> Response:
    obs: Observability | None = gateway_of(request).observability
    body = obs.metrics.render() if obs is not None else b""
    return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})


def observability_routes() -> list[BaseRoute]:
    """`GET /metrics` and the live feed routes (see `gateway.feeds`)."""
    return [Route("/metrics", metrics_endpoint, methods=["GET"]), *feed_routes()]


@dataclass(eq=False)
class Observability:
    """What `open_observability` leaves on `gateway.observability` (see the module docstring)."""

    gateway: Gateway
    hub: Hub
    metrics: GatewayMetrics
    coach: Coach = field(init=False)
    loop_lag_s: float = 0.0  # the latest reading of `probe_loop_lag`
    replicas: Replicas | None = None  # the link to other replicas (with `redis_url`)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    # -- hooks into the gateway

    def publish(self, live: LiveSession, event: ServerEvent) -> None:
        """`gateway.publishers`: every event of a turn goes to the session's feed."""
        self.hub.publish(live.session_id, live.user_id, event.type, event)

    def on_metrics(self, live: LiveSession, metrics: dict[str, float]) -> None:
        """`gateway.on_metrics`: `metrics.push` from a WebSocket."""
        self.coach.push(live.session_id, live.user_id, metrics)

    async def turn_finished(self, record: TurnRecord) -> None:
        """`TurnObserver`: metrics and the rolling window of the ops feed."""
        self.metrics.observe_turn(record)

    def deliver(self, session_id: str, event: ServerEvent) -> None:
        """Push an event to a session's live connections and to its feed."""
        self.gateway.registry.deliver(session_id, event)
        owner = self.owner_of(session_id)
        if owner is not None:
            self.hub.publish(session_id, owner, event.type, event)

    def on_breaker_change(self, target: str, old: str, new: str) -> None:
        self.hub.ops.publish(
            "breaker.changed",
            {"target": target, "old": str(old), "new": str(new), "state": str(new), "ts": _now()},
        )

    def owner_of(self, session_id: str) -> str | None:
        owner = self.hub.owner(session_id)
        if owner is None and (live := self.gateway.registry.get(session_id)) is not None:
            owner = live.user_id
        return owner

    # -- ops snapshots

    def snapshot(self) -> dict[str, Any]:
        """What the ops feed sends: this replica's figures, every replica's, and totals."""
        others = self.replicas.board.others if self.replicas is not None else {}
        return cluster_view(self.local_snapshot(), replica_name(self.gateway.settings), others)

    def local_snapshot(self) -> dict[str, Any]:
        gateway = self.gateway
        window = self.metrics.window.stats()
        return {
            "ts": _now(),
            "active_sessions": len(gateway.registry),
            "connections": self.connection_count(),
            "running_turns": gateway.running_turns,
            "ttft_p50_ms": window.ttft_p50_ms,
            "ttft_p95_ms": window.ttft_p95_ms,
            "turns_last_minute": window.turns,
            "error_rate": round(window.error_rate, 4),
            "breakers": self.breakers(),
            "quota_rejections": gateway.quotas.rejections(),
            "assess_queue_depth": self.assess_queue_depth(),
            "feed_subscribers": self.hub.subscribers,
            "coaching_in_flight": self.coach.in_flight,
            "event_loop_lag_ms": round(self.loop_lag_s * 1000, 3),
        }

    def publish_snapshot(self) -> None:
        self.hub.ops.publish("ops.snapshot", self.snapshot())

    async def run_snapshots(self, interval_s: float) -> None:
        """Publish a snapshot every `interval_s` while someone reads the ops feed."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._stop.wait()
            if self.hub.ops.subscribers and not self._stop.is_set():
                try:
                    self.publish_snapshot()
                except Exception:  # one bad read must not end the feed's loop
                    log.exception("ops snapshot failed")

    async def probe_loop_lag(self, interval_s: float = LOOP_PROBE_S) -> None:
        """Time a short sleep: whatever it overshoots by, every ready event also waited."""
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            await asyncio.sleep(interval_s)
            self.loop_lag_s = max(0.0, loop.time() - started - interval_s)
            self.metrics.loop_lag.observe(self.loop_lag_s)

    def stopping(self) -> bool:
        """True once the gateway drains or closes: feed streams end."""
        return self.gateway.draining or self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.hub.close()

    # -- readings from other components

    def connection_count(self) -> int:
        return len(self.gateway.connections)

    def breakers(self) -> dict[str, str]:
        states = getattr(self.gateway.router, "breaker_states", None)
        return {str(k): str(v) for k, v in states().items()} if callable(states) else {}

    def _pipeline(self) -> Any:
        return getattr(self.gateway.persistence, "pipeline", None)

    def assess_queue_depth(self) -> int | None:
        pipeline = self._pipeline()
        if pipeline is None:
            return None
        depth = m.plain(getattr(pipeline, "queue_depth", None))
        if depth is None:
            queue = getattr(pipeline, "_queue", None)
            depth = m.plain(getattr(queue, "qsize", None))
        return None if depth is None else int(depth)

    def gauges(self) -> Iterator[Metric]:
        """Metrics read from the gateway at scrape time."""
        gateway = self.gateway
        yield m.gauge("coach_active_sessions", "Sessions held in memory.", len(gateway.registry))
        yield m.gauge("coach_connections", "Open WebSocket connections.", self.connection_count())
        yield m.gauge("coach_running_turns", "Turns streaming now.", gateway.running_turns)
        yield m.gauge("coach_feed_subscribers", "Live feed readers.", self.hub.subscribers)
        yield m.gauge(
            "coach_feed_dropped_readers", "Feed readers dropped for lag.", self.hub.dropped
        )
        yield m.labelled_counter(
            "coach_quota_rejections",
            "Quota rejections by scope.",
            "scope",
            {k: float(v) for k, v in gateway.quotas.rejections().items()},
        )
        yield m.labelled_gauge(
            "coach_breaker_state",
            "Circuit state: 0 closed, 1 half_open, 2 open, 3 unusable.",
            "target",
            m.breaker_values(self.breakers()),
        )
        yield from self._assess_gauges()
        yield from self._scheduler_metrics()

    def _assess_gauges(self) -> Iterator[Metric]:
        depth = self.assess_queue_depth()
        if depth is not None:
            yield m.gauge("coach_assess_queue_depth", "Assessment jobs queued here.", depth)
        stats = getattr(self._pipeline(), "stats", None)
        if stats is not None:
            values = {o: m.plain(getattr(stats, o, None)) for o in _JOB_OUTCOMES}
            yield m.labelled_counter(
                "coach_assess_jobs",
                "Assessment jobs by outcome.",
                "outcome",
                {k: v for k, v in values.items() if v is not None},
            )

    def _scheduler_metrics(self) -> Iterator[Metric]:
        scheduler = self.gateway.scheduler
        if scheduler is None:
            return
        stats = scheduler.stats
        yield m.labelled_counter(
            "coach_scheduler_ticks",
            "Insight schedule ticks seen here: run here, held (by another process, or done), late.",
            "outcome",
            {k: float(v) for k, v in stats.ticks.items()},
        )
        yield m.labelled_counter(
            "coach_scheduled_insights",
            "Scheduled insights made here, by source (or skipped, failed).",
            "outcome",
            {k: float(v) for k, v in stats.insights.items()},
        )
        yield m.gauge(
            "coach_scheduler_last_tick_seconds",
            "How long the last tick run here took.",
            stats.last_tick_seconds,
        )


class GcPauses:
    """A `gc.callbacks` hook: times every collection into `coach_gc_pause_seconds`."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._by_generation = [metrics.gc_pause.labels(str(gen)) for gen in range(3)]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


async def open_observability(gateway: Gateway, stack: contextlib.AsyncExitStack) -> Observability:
    """Set everything up for the app's lifetime (`gateway.observability`, also returned);
    closing `stack` undoes it."""
    settings = gateway.settings
    if settings.otlp_endpoint:
        detach = attach_exporter(settings.service_name, otlp_exporter(settings.otlp_endpoint))

        async def _flush_spans() -> None:
            await detach()

        stack.push_async_callback(_flush_spans)
    metrics = GatewayMetrics()
    hub = Hub(replay=settings.feed_replay_events, queue_size=settings.send_queue_size)
    obs = Observability(gateway, hub, metrics)
    metrics.add_scrape(obs.gauges)
    gc_pauses = GcPauses(metrics)
    gc.callbacks.append(gc_pauses)
    stack.callback(gc.callbacks.remove, gc_pauses)
    obs.coach = await stack.enter_async_context(
        open_coach(
            gateway.router,
            hub,
            obs.deliver,
            interval_s=settings.coaching_feedback_interval_s,
            on_outcome=lambda outcome: metrics.coaching.labels(outcome).inc(),
        )
    )
    tasks = await stack.enter_async_context(asyncio.TaskGroup())
    stack.callback(obs.stop)  # runs first on exit: the snapshot loop ends, then its group
    tasks.create_task(obs.run_snapshots(settings.ops_snapshot_interval_s), name="ops-snapshots")
    tasks.create_task(obs.probe_loop_lag(), name="loop-lag-probe")
    gateway.publishers.append(obs.publish)
    gateway.on_metrics = obs.on_metrics
    gateway.engine.observers.append(obs)
    gateway.router.add_breaker_listener(obs.on_breaker_change)
    obs.replicas = await open_replicas(settings, hub, obs.local_snapshot, metrics, stack)
    gateway.observability = obs
    speech_meters = getattr(gateway.stt, "meters", None)  # `gateway.speech_telemetry`
    if speech_meters is not None:
        speech_meters.watch(metrics.observe_stt, metrics.observe_tts)
    return obs
