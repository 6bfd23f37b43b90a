"""OpenTelemetry tracing: one SDK tracer provider per process, span exporters per running app.

The global tracer provider can be set once per process, but tests (and the demo) build several
apps. So the SDK provider is installed lazily, the first time an exporter is attached, and it
forwards to a `Switchboard` of span processors that apps attach and detach. While nothing is
attached (no `OTEL_EXPORTER_OTLP_ENDPOINT`), either no SDK provider was ever installed (the API's
no-op, the production case) or the `Switchboard` sampler drops every span at its start, so
tracing costs next to nothing. The resource's `service.name` is the first app's `service_name`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from gateway.ids import hash_id

__all__ = [
    "Switchboard",
    "attach_exporter",
    "otlp_exporter",
    "session_span",
    "switchboard",
    "traces_url",
]

log = logging.getLogger("coach.telemetry")

_lock = threading.Lock()
_board: Switchboard | None = None


class Switchboard(SpanProcessor):
    """Forwards span ends to the processors attached now; samples nothing when there are none."""

    def __init__(self) -> None:
        self._processors: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self._processors)

    def attach(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = (*self._processors, processor)

    def detach(self, processor: SpanProcessor) -> None:
        with self._lock:
            self._processors = tuple(p for p in self._processors if p is not processor)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


class _SwitchboardSampler(Sampler):
    """Parent-based always-on while an exporter is attached; drop everything otherwise."""

    def __init__(self, board: Switchboard) -> None:
        self._board = board
        self._on = ParentBased(ALWAYS_ON)

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self._board.active:
            return SamplingResult(Decision.DROP)
        return self._on.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "CoachSwitchboardSampler"


def switchboard(service_name: str) -> Switchboard:
    """The process's switchboard, installing the SDK tracer provider on first use."""
    global _board
    with _lock:
        if _board is None:
            board = Switchboard()
            provider = TracerProvider(
                resource=Resource.create({"service.name": service_name}),
                sampler=_SwitchboardSampler(board),
            )
            provider.add_span_processor(board)
            trace.set_tracer_provider(provider)
            current = trace.get_tracer_provider()
            if current is not provider:
                # Someone set the global provider first: export through theirs if we can.
                log.warning("a tracer provider was already set; gateway exporters join it")
                if isinstance(current, TracerProvider):
                    current.add_span_processor(board)
            _board = board
        return _board


def traces_url(endpoint: str) -> str:
    """`OTEL_EXPORTER_OTLP_ENDPOINT` is a base URL; the HTTP exporter wants the signal path."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


def otlp_exporter(endpoint: str) -> SpanExporter:
    """OTLP over HTTP/protobuf to `endpoint` (a base URL)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=5)


def attach_exporter(
    service_name: str, exporter: SpanExporter, *, batch: bool = True
) -> Callable[[], asyncio.Future[None]]:
    """Send spans to `exporter` until the returned `detach` is awaited (which flushes them).

    `batch=False` exports each span as it ends (tests with an in-memory exporter).
    """
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    processor: SpanProcessor = (
        BatchSpanProcessor(exporter, schedule_delay_millis=500)
        if batch
        else SimpleSpanProcessor(exporter)
    )
    board = switchboard(service_name)
    board.attach(processor)

    def detach() -> asyncio.Future[None]:
        board.detach(processor)
        # Flushing posts over blocking HTTP: keep it off the event loop.
        return asyncio.ensure_future(asyncio.to_thread(processor.shutdown))

    return detach


_gateway_tracer = trace.get_tracer("coach.gateway")


@contextmanager
def session_span(kind: str, user_id: str, session_id: str) -> Iterator[trace.Span]:
    """The span of one WebSocket/SSE session's lifetime; turn spans become its children."""
    attributes = {
        "coach.session.kind": kind,
        "coach.user.hash": hash_id(user_id),
        "coach.session.hash": hash_id(session_id),
    }
    with _gateway_tracer.start_as_current_span(
        f"session {kind}", kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span
