"""OpenTelemetry for upstream calls: a `chat {model}` span per attempt (GenAI semantic
conventions) and events on the caller's span for routing decisions."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from providers.chat import ChatRequest, Usage
from providers.errors import ProviderError

__all__ = ["end_attempt_span", "route_event", "start_attempt_span"]

AttributeValue = str | bool | int | float | list[str]


def route_event(name: str, attributes: Mapping[str, AttributeValue | None]) -> None:
    """Add an event to the current span (the turn's), leaving out unset attributes."""
    clean = {key: value for key, value in attributes.items() if value is not None}
    trace.get_current_span().add_event(name, clean)


def start_attempt_span(
    tracer: Tracer, *, target: str, kind: str, request: ChatRequest, attempt: int
) -> Span:
    """Start (without making it current) the span of one provider attempt."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system": kind,
        "gen_ai.provider.name": kind,
        "gen_ai.request.model": request.model,
        "coach.route.target": target,
        "coach.route.attempt": attempt,
    }
    if request.max_tokens is not None:
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    return tracer.start_span(f"chat {request.model}", kind=SpanKind.CLIENT, attributes=attributes)


def end_attempt_span(
    span: Span,
    *,
    usage: Usage | None,
    finish_reason: str | None,
    response_model: str | None,
    error: BaseException | None,
) -> None:
    """Record the outcome of an attempt on its span and end it."""
    if response_model:
        span.set_attribute("gen_ai.response.model", response_model)
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    if finish_reason:
        span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
    if isinstance(error, ProviderError):
        span.set_attribute("error.type", error.code)
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, error.message))
    elif error is not None:
        span.set_attribute("coach.cancelled", True)
    span.end()
