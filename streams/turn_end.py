"""How a turn ends (`streams.turn`): its last event, the failure body, its span's attributes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace

from providers.errors import ProviderError
from streams.events import ResponseCompleted, ResponseFailed, ServerEvent
from streams.records import Stored, TurnRecord

__all__ = ["annotate_span", "emit_end", "failure_body"]


async def emit_end(
    emit: Callable[[ServerEvent], Awaitable[None]],
    record: TurnRecord,
    failure: dict[str, Any] | None,
    stored: Stored,
    *,
    first_event_ms: float | None,
) -> None:
    """The turn's last event: `response.failed` with what was sent, or `response.completed`."""
    if failure is not None:
        await emit(ResponseFailed(record.turn_id, failure, record.reply_text))
        return
    await emit(
        ResponseCompleted(
            turn_id=record.turn_id,
            text=record.reply_text,
            finish_reason=record.finish_reason,
            usage={"input_tokens": record.input_tokens, "output_tokens": record.output_tokens},
            timings={
                "ttft_ms": _round(record.ttft_ms),
                "upstream_ttft_ms": _round(record.upstream_ttft_ms),
                "total_ms": _round(record.total_ms),
                "first_audio_ms": _round(record.first_audio_ms),
                "first_event_ms": _round(first_event_ms),
            },
            provider=record.provider or "",
            model=record.model or "",
            fallbacks=record.fallbacks,
            stored=stored,
        )
    )


def failure_body(error: ProviderError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"code": error.code, "message": error.message, "retryable": error.transient}


def annotate_span(span: trace.Span, record: TurnRecord) -> None:
    """Observability (gateway/observability.py): timings, target and tokens on the turn span."""
    if not span.is_recording():
        return
    attributes: dict[str, str | int | float] = {
        "coach.total_ms": round(record.total_ms, 3),
        "coach.fallbacks": len(record.fallbacks),
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
    }
    for key, value in (
        ("coach.ttft_ms", record.ttft_ms),
        ("coach.upstream_ttft_ms", record.upstream_ttft_ms),
        ("coach.first_audio_ms", record.first_audio_ms),
    ):
        if value is not None:
            attributes[key] = round(value, 3)
    if record.provider and record.model:
        attributes["coach.provider"] = record.provider
        attributes["gen_ai.request.model"] = record.model
    span.set_attributes(attributes)
    if record.error_code is not None:
        span.set_attribute("error.type", record.error_code)
        span.set_status(trace.Status(trace.StatusCode.ERROR, record.error_code))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
