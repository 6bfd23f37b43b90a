"""Prometheus metrics of one gateway, on a registry of its own (tests build several apps).

Histograms and counters are fed by finished turns (`GatewayMetrics` is a `TurnObserver`) and by
the voice and assessment code (`observe_stt`, `observe_tts`, `observe_assess_job`). Gauges are
read from the running gateway at scrape time. Labels are low-cardinality: provider, model,
route, channel, status, scope, target; never a user or session id.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from streams.records import TurnRecord

__all__ = ["BREAKER_VALUES", "GatewayMetrics", "TurnWindow", "WindowStats"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2, "unusable": 3}
TURN_LABELS = ("provider", "model", "route", "channel")


@dataclass(frozen=True, slots=True)
class WindowStats:
    turns: int
    errors: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.turns if self.turns else 0.0


class TurnWindow:
    """Finished turns of the last `span_s` seconds, for the ops feed's rolling figures.

    Bounded: past `maxlen` turns in the window the oldest are forgotten early.
    """

    def __init__(
        self,
        span_s: float = 60.0,
        maxlen: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._span_s = span_s
        self._clock = clock
        self._turns: deque[tuple[float, float | None, bool]] = deque(maxlen=maxlen)

    def add(self, ttft_ms: float | None, failed: bool) -> None:
        self._turns.append((self._clock(), ttft_ms, failed))

    def stats(self) -> WindowStats:
        horizon = self._clock() - self._span_s
        while self._turns and self._turns[0][0] < horizon:
            self._turns.popleft()
        ttfts = sorted(t for _, t, _ in self._turns if t is not None)
        errors = sum(1 for _, _, failed in self._turns if failed)
        return WindowStats(len(self._turns), errors, _quantile(ttfts, 0.5), _quantile(ttfts, 0.95))


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return round(ordered[index], 3)


class GatewayMetrics:
    """The gateway's Prometheus metrics; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.window = TurnWindow()
        r = self.registry
        self.ttft = Histogram(
            "coach_ttft_seconds",
            "Gateway time to first token: turn received to first delta sent.",
            TURN_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_ttft = Histogram(
            "coach_upstream_ttft_seconds",
            "Upstream time to first token: request sent to first upstream token.",
            TURN_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.added_ttft = Histogram(
            "coach_gateway_added_ttft_seconds",
            "What the gateway adds to the first token (ttft minus upstream ttft).",
            TURN_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "coach_turn_duration_seconds",
            "Turn duration, received to last event.",
            TURN_LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.first_audio = Histogram(
            "coach_first_audio_seconds",
            "Turn received to first reply audio sent.",
            ("channel",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "coach_event_loop_lag_seconds",
            "How late the event loop ran a timer: every event waits about this long (CPU "
            "saturation shows here first, and as upstream time in the TTFT figures).",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.gc_pause = Histogram(
            "coach_gc_pause_seconds",
            "Garbage collections by generation: the whole event loop stops for each.",
            ("generation",),
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.turns = Counter("coach_turns", "Finished turns.", ("status", *TURN_LABELS), registry=r)
        self.tokens = Counter(
            "coach_tokens",
            "Tokens by type (input, output).",
            ("type", "provider", "model"),
            registry=r,
        )
        self.fallbacks = Counter(
            "coach_fallbacks",
            "Targets given up on before the first token.",
            ("target", "code"),
            registry=r,
        )
        self.stt = Histogram(
            "coach_stt_seconds",
            "Speech-to-text latency per utterance.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tts = Histogram(
            "coach_tts_seconds",
            "Text-to-speech latency per sentence (to first audio).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.assess_job = Histogram(
            "coach_assess_job_seconds",
            "Assessment job latency, claim to written.",
            ("outcome",),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.coaching = Counter(
            "coach_coaching_feedback",
            "Live coaching tips by outcome.",
            ("outcome",),
            registry=r,
        )
        self.http_requests = Counter(
            "coach_http_requests",
            "HTTP requests and WebSocket sessions by route template.",
            ("route", "method", "status"),
            registry=r,
        )
        self.http_duration = Histogram(
            "coach_http_request_seconds",
            "Request (or WebSocket session) duration.",
            ("route", "method"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def add_scrape(self, gauges: Callable[[], Iterator[Metric]]) -> None:
        """Add metrics computed by `gauges()` at each scrape."""
        self.registry.register(_ScrapeCollector(gauges))

    async def turn_finished(self, record: TurnRecord) -> None:
        """`TurnObserver`: count and time one finished turn (never blocks)."""
        self.observe_turn(record)

    def observe_turn(self, record: TurnRecord, route: str = "chat") -> None:
        labels = (record.provider or "none", record.model or "none", route, record.channel)
        self.turns.labels(record.status, *labels).inc()
        self.duration.labels(*labels).observe(record.total_ms / 1000)
        if record.ttft_ms is not None:
            self.ttft.labels(*labels).observe(record.ttft_ms / 1000)
            if record.upstream_ttft_ms is not None:
                added = max(0.0, record.ttft_ms - record.upstream_ttft_ms)
                self.added_ttft.labels(*labels).observe(added / 1000)
        if record.upstream_ttft_ms is not None:
            self.upstream_ttft.labels(*labels).observe(record.upstream_ttft_ms / 1000)
        if record.first_audio_ms is not None:
            self.first_audio.labels(record.channel).observe(record.first_audio_ms / 1000)
        provider, model = labels[0], labels[1]
        self.tokens.labels("input", provider, model).inc(record.input_tokens)
        self.tokens.labels("output", provider, model).inc(record.output_tokens)
        for fallback in record.fallbacks:
            self.fallbacks.labels(str(fallback.get("target")), str(fallback.get("code"))).inc()
        self.window.add(record.ttft_ms, record.status == "failed")

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_duration.labels(route, method).observe(seconds)

    def observe_stt(self, seconds: float) -> None:
        self.stt.observe(seconds)

    def observe_tts(self, seconds: float) -> None:
        self.tts.observe(seconds)

    def observe_assess_job(self, seconds: float, outcome: str = "done") -> None:
        self.assess_job.labels(outcome).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ScrapeCollector:
    """Gauges computed from the running gateway when Prometheus scrapes."""

    def __init__(self, gauges: Callable[[], Iterator[Metric]]) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from self._gauges()


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled_gauge(name: str, doc: str, label: str, values: dict[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def labelled_counter(
    name: str, doc: str, label: str, values: dict[str, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def breaker_values(states: dict[str, str]) -> dict[str, float]:
    return {target: float(BREAKER_VALUES.get(state, 3)) for target, state in states.items()}


def plain(value: Any) -> float | None:
    """A number read defensively from another component (None if it is not one)."""
    if callable(value):
        value = value()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
