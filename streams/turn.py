"""The turn engine: one user turn in, a streamed reply out, the finished turn kept.

Failover happens inside the router before the first token; once a token has been sent, a failure
ends the turn with `response.failed` and the partial text kept. A barge-in cancels the turn's
task; the engine then keeps what was actually sent, as a cancelled turn.

A finished turn is kept (stored, charged: `TurnKeeper`) before its final event is sent, and the
keeping runs to its end even if the client goes away meanwhile (DESIGN.md, "Durability").
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry import trace

from providers.chat import ChatRequest, Message, Usage
from providers.errors import ProviderError, UpstreamTimeout
from providers.routing import Fallback, RoutedStream, Router
from streams.events import (
    ResponseCompleted,
    ResponseDelta,
    ResponseFailed,
    ResponseStarted,
    ServerEvent,
)
from streams.prompts import system_prompt
from streams.records import Channel, Stored, TurnKeeper, TurnObserver, TurnRecord, TurnStatus
from streams.session import LiveSession

__all__ = ["SpeechSink", "TurnControl", "TurnEngine", "TurnInput"]

log = logging.getLogger("coach.turn")
tracer = trace.get_tracer("coach.streams")

# A turn that could be kept neither in Postgres nor in the spool: the client is told it failed
# (retryable), since only a stored turn may be reported as completed.
NOT_STORED = "storage_unavailable"
_NOT_STORED_BODY = {
    "code": NOT_STORED,
    "message": "the turn could not be stored; retry shortly",
    "retryable": True,
}

Emit = Callable[[ServerEvent], Awaitable[None]]


class SpeechSink(Protocol):
    """Where reply text goes to be spoken (see `streams.voice.SpeechOut`)."""

    def feed(self, delta: str) -> None: ...

    async def finish(self) -> float | None: ...

    async def cancel(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TurnInput:
    turn_id: str
    text: str
    request_id: str
    channel: Channel
    received_at: float = field(default_factory=time.perf_counter)
    audio_ms: int = 0
    # The OpenAI-compatible endpoint brings its own context; the others use the session's.
    context: tuple[Message, ...] | None = None
    max_tokens: int | None = None
    model: str | None = None  # overrides the session's model choice for this turn


@dataclass(slots=True)
class TurnControl:
    """Shared between the engine and whoever may barge in on the turn."""

    cancel_requested: bool = False
    # Set once the turn is kept and its final event is out: the client may send its next turn.
    replied: bool = False
    _streamed: asyncio.Event | None = None

    @property
    def streamed(self) -> asyncio.Event:
        """Set by `Gateway.run_turn` once the turn no longer streams: kept, replied, its
        exchange in the session's history, its stream slot free. A next turn (which sends that
        history) starts then. Made on first use: a connection holds a control before its first
        turn, and an Event adds to what each idle connection holds."""
        if self._streamed is None:
            self._streamed = asyncio.Event()
        return self._streamed


@dataclass(slots=True)
class _Progress:
    text: list[str] = field(default_factory=list)
    ttft_ms: float | None = None
    usage: Usage | None = None
    finish_reason: str = "stop"
    routed: RoutedStream | None = None
    fallbacks: list[Fallback] = field(default_factory=list)

    @property
    def reply(self) -> str:
        return "".join(self.text)


class TurnEngine:
    """Runs turns against the `chat` route, keeps each finished one (`keeper`; without one the
    turn is stored nowhere) and tells the observers how it ended."""

    def __init__(
        self,
        router: Router,
        observers: Sequence[TurnObserver] = (),
        *,
        keeper: TurnKeeper | None = None,
        max_reply_tokens: int = 512,
        turn_timeout_s: float = 180.0,
        route: str = "chat",
    ) -> None:
        self._router = router
        self.observers = list(observers)
        self.keeper = keeper
        self._max_reply_tokens = max_reply_tokens
        self._turn_timeout_s = turn_timeout_s
        self._route = route

    def request_for(self, live: LiveSession, turn: TurnInput) -> ChatRequest:
        if turn.context is not None:
            messages = (*turn.context, Message("user", turn.text))
        else:
            config = live.config
            system = Message("system", system_prompt(config.coach, config.focus_ids))
            messages = (system, *live.history, Message("user", turn.text))
        max_tokens = min(turn.max_tokens or self._max_reply_tokens, self._max_reply_tokens)
        return ChatRequest(
            model="", messages=messages, max_tokens=max_tokens, request_id=turn.request_id
        )

    async def reply(
        self,
        live: LiveSession,
        turn: TurnInput,
        emit: Emit,
        *,
        control: TurnControl | None = None,
        speech: SpeechSink | None = None,
    ) -> TurnRecord:
        """Stream the reply, keep the finished turn, then send its final event; the exchange goes
        into the session's history."""
        control = control or TurnControl()
        progress = _Progress()
        status: TurnStatus = "completed"
        error: ProviderError | None = None
        with tracer.start_as_current_span(
            "turn", attributes={"coach.channel": turn.channel, "coach.turn_id": turn.turn_id}
        ) as span:
            try:
                async with asyncio.timeout(self._turn_timeout_s):
                    await self._stream(live, turn, emit, progress, speech)
            except asyncio.CancelledError:
                if not control.cancel_requested:
                    raise
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                status, progress.finish_reason = "cancelled", "cancelled"
            except TimeoutError:
                status, error = "failed", UpstreamTimeout("the turn took too long")
            except ProviderError as exc:
                status, error = "failed", exc
            finally:
                if progress.routed is not None:
                    await progress.routed.aclose()
            first_audio_ms = await self._end_speech(speech, status)
            span.set_attribute("coach.status", status)
            record = self._record(live, turn, progress, status, error, first_audio_ms)
            stored, record = await self._keep(record, control)
            failure = _failure_body(error)
            if stored is None:
                failure = failure or _NOT_STORED_BODY
            _annotate_span(span, record)  # observability: the turn's outcome on its span
            if record.status != "failed" and (progress.reply or status == "completed"):
                live.add_exchange(turn.text, progress.reply)
            await self._emit_end(emit, turn, progress, record, failure, stored or "none")
            control.replied = True
        return record

    async def _keep(
        self, record: TurnRecord, control: TurnControl
    ) -> tuple[Stored | None, TurnRecord]:
        """Keep the turn and tell the observers, to the end even if this task is cancelled
        meanwhile (the client went away): a turn that finished is stored whether or not anyone
        is left to tell. A cancellation that came meanwhile is raised again after, unless it is
        the barge-in `control` asked for. Returns where it is stored and the record as kept (a
        failed turn when it could be stored nowhere)."""
        keeping = asyncio.ensure_future(self._keep_and_observe(record))
        interrupted = False
        while not keeping.done():
            try:
                await asyncio.shield(keeping)
            except asyncio.CancelledError:
                if not control.cancel_requested:
                    interrupted = True
                elif (task := asyncio.current_task()) is not None:
                    task.uncancel()
        if interrupted:
            raise asyncio.CancelledError
        return keeping.result()

    async def _keep_and_observe(self, record: TurnRecord) -> tuple[Stored | None, TurnRecord]:
        stored: Stored | None = "none"
        if self.keeper is not None:
            stored = await self.keeper.keep(record)
        if stored is None:
            record = dataclasses.replace(record, status="failed", error_code=NOT_STORED)
        for observer in self.observers:
            await observer.turn_finished(record)
        return stored, record

    async def _stream(
        self,
        live: LiveSession,
        turn: TurnInput,
        emit: Emit,
        progress: _Progress,
        speech: SpeechSink | None,
    ) -> None:
        request = self.request_for(live, turn)
        model = turn.model or live.config.model
        routed = await self._router.open_stream(self._route, request, model=model)
        progress.routed = routed
        progress.fallbacks = routed.fallbacks
        await emit(ResponseStarted(turn.turn_id, routed.target.provider, routed.target.model))
        async for chunk in routed:
            if chunk.text:
                if progress.ttft_ms is None:
                    progress.ttft_ms = (time.perf_counter() - turn.received_at) * 1000
                progress.text.append(chunk.text)
                await emit(ResponseDelta(turn.turn_id, chunk.text))
                if speech is not None:
                    speech.feed(chunk.text)
            if chunk.usage is not None:
                progress.usage = chunk.usage
            if chunk.finish_reason is not None:
                progress.finish_reason = chunk.finish_reason

    @staticmethod
    async def _end_speech(speech: SpeechSink | None, status: TurnStatus) -> float | None:
        if speech is None:
            return None
        if status == "completed":
            return await speech.finish()
        await speech.cancel()
        return None

    def _record(
        self,
        live: LiveSession,
        turn: TurnInput,
        progress: _Progress,
        status: TurnStatus,
        error: ProviderError | None,
        first_audio_ms: float | None,
    ) -> TurnRecord:
        routed = progress.routed
        usage = progress.usage or Usage(
            input_tokens=sum(len(m.content.split()) for m in self.request_for(live, turn).messages),
            output_tokens=len(progress.text),
        )
        return TurnRecord(
            turn_id=turn.turn_id,
            request_id=turn.request_id,
            user_id=live.user_id,
            session_id=live.session_id,
            channel=turn.channel,
            user_text=turn.text,
            reply_text=progress.reply,
            status=status,
            finish_reason=progress.finish_reason if status != "failed" else "error",
            provider=routed.target.provider if routed else None,
            model=routed.target.model if routed else None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            ttft_ms=progress.ttft_ms,
            upstream_ttft_ms=routed.upstream_ttft_ms if routed else None,
            total_ms=(time.perf_counter() - turn.received_at) * 1000,
            cost_usd=routed.cost_usd if routed else 0.0,
            fallbacks=[f.to_dict() for f in progress.fallbacks],
            error_code=error.code if error else None,
            focus_ids=live.config.focus_ids,
            audio_in_ms=turn.audio_ms,
            first_audio_ms=first_audio_ms,
            started_at=datetime.now(UTC),
        )

    @staticmethod
    async def _emit_end(
        emit: Emit,
        turn: TurnInput,
        progress: _Progress,
        record: TurnRecord,
        failure: dict[str, Any] | None,
        stored: Stored,
    ) -> None:
        if failure is not None:
            await emit(ResponseFailed(turn.turn_id, failure, progress.reply))
            return
        await emit(
            ResponseCompleted(
                turn_id=turn.turn_id,
                text=progress.reply,
                finish_reason=record.finish_reason,
                usage={"input_tokens": record.input_tokens, "output_tokens": record.output_tokens},
                timings={
                    "ttft_ms": _round(record.ttft_ms),
                    "upstream_ttft_ms": _round(record.upstream_ttft_ms),
                    "total_ms": _round(record.total_ms),
                    "first_audio_ms": _round(record.first_audio_ms),
                },
                provider=record.provider or "",
                model=record.model or "",
                fallbacks=record.fallbacks,
                stored=stored,
            )
        )


def _failure_body(error: ProviderError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"code": error.code, "message": error.message, "retryable": error.transient}


def _annotate_span(span: trace.Span, record: TurnRecord) -> None:
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
