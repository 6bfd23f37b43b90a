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

from providers.chat import ChatChunk, ChatRequest, Message, ToolCall, ToolSpec, Usage
from providers.errors import ProviderError, UpstreamTimeout
from providers.routing import Fallback, RoutedStream, Router
from streams.agent import Screened, TurnAgent
from streams.events import (
    ChangeProposed,
    ResponseDelta,
    ResponseStarted,
    ResponseToolCall,
    ResponseToolResult,
    ServerEvent,
)
from streams.prompts import system_prompt
from streams.records import Channel, Stored, TurnKeeper, TurnObserver, TurnRecord, TurnStatus
from streams.session import LiveSession
from streams.turn_end import annotate_span, emit_end, failure_body

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

# The finish reason of a turn whose model still called tools when it had no round left.
TOOL_LIMIT = "tool_limit"
# Who answered a turn the guardrails answered (`response.started`, the stored interaction).
SAFETY_PROVIDER = "guardrail"
SAFETY_MODEL = "safety"


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
    # Tools offered to the model (ChatRequest.tools, .tool_choice). The engine runs no tool: a
    # call ends the turn with finish_reason "tool_calls" after one `response.tool_call` each.
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    # What follows the user's text in this round: the assistant's tool calls and their results.
    tail: tuple[Message, ...] = ()


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
    ttft_ms: float | None = None  # to the first text delta
    first_event_ms: float | None = None  # to the first delta or tool call
    usage: Usage | None = None  # of every model call of the turn
    finish_reason: str = "stop"
    routed: RoutedStream | None = None  # the latest model call
    upstream_ttft_ms: float | None = None  # of the first model call
    cost_usd: float = 0.0  # of the model calls finished before `routed`
    fallbacks: list[Fallback] = field(default_factory=list)
    upstream_text: str | None = None  # the user's text as sent upstream (guardrails)
    safety_flag: str | None = None  # the guardrails answered: "injury" | "self_harm"

    @property
    def reply(self) -> str:
        return "".join(self.text)

    def since(self, turn: TurnInput) -> float:
        return (time.perf_counter() - turn.received_at) * 1000

    def add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        before = self.usage or Usage()
        self.usage = Usage(
            before.input_tokens + usage.input_tokens, before.output_tokens + usage.output_tokens
        )


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
        agent: TurnAgent | None = None,
        max_tool_rounds: int = 4,
    ) -> None:
        self._router = router
        self.observers = list(observers)
        self.keeper = keeper
        self._max_reply_tokens = max_reply_tokens
        self._turn_timeout_s = turn_timeout_s
        self._route = route
        # Guardrails, memories and server tools (`streams.agent`); None: none of them.
        self.agent = agent
        self._max_tool_rounds = max_tool_rounds

    def request_for(
        self,
        live: LiveSession,
        turn: TurnInput,
        *,
        upstream_text: str | None = None,
        extra: Sequence[Message] = (),
        tail: Sequence[Message] = (),
        tools: tuple[ToolSpec, ...] | None = None,
        tool_choice: str | None = None,
    ) -> ChatRequest:
        """The model call of a turn: the conversation, the user's text (`upstream_text`: as the
        guardrails left it), then this turn's tool calls and results so far (`tail`); `extra`
        joins a session's context after the coach's system prompt (memories)."""
        user = Message("user", turn.text if upstream_text is None else upstream_text)
        if turn.context is not None:
            messages = (*turn.context, user, *turn.tail, *tail)
        else:
            config = live.config
            system = Message("system", system_prompt(config.coach, config.focus_ids))
            messages = (system, *extra, *live.history, user, *turn.tail, *tail)
        max_tokens = min(turn.max_tokens or self._max_reply_tokens, self._max_reply_tokens)
        return ChatRequest(
            model="",
            messages=messages,
            max_tokens=max_tokens,
            request_id=turn.request_id,
            tools=turn.tools if tools is None else tools,
            tool_choice=turn.tool_choice if tools is None else tool_choice,
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
            failure = failure_body(error)
            if stored is None:
                failure = failure or _NOT_STORED_BODY
            annotate_span(span, record)  # observability: the turn's outcome on its span
            # A round that ended in tool calls is not an exchange yet: its answer comes after.
            ended_in_calls = progress.finish_reason == "tool_calls"
            if (
                record.status != "failed"
                and not ended_in_calls
                and (progress.reply or status == "completed")
            ):
                live.add_exchange(progress.upstream_text or turn.text, progress.reply)
            first_event_ms = progress.first_event_ms
            await emit_end(emit, record, failure, stored or "none", first_event_ms=first_event_ms)
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
        """The guardrails, then the model/tool loop: each round is one model call through the
        router; a round that ends in calls of the agent's server tools runs them and goes on.
        The last round may call none (`tool_choice: "none"`: the tools stay declared, as a
        conversation holding tool calls needs them); calls it makes anyway are not run, and the
        turn ends with finish_reason `tool_limit`."""
        agent = self.agent if turn.context is None else None
        extra: tuple[Message, ...] = ()
        server_tools: tuple[ToolSpec, ...] = ()
        if agent is not None:
            screened = agent.screen(turn.text)
            progress.upstream_text = screened.upstream_text
            if screened.answer is not None:
                await self._answer_safely(turn, screened, emit, progress, speech)
                return
            extra = await agent.context(live, screened.upstream_text)
            server_tools = () if turn.tools else agent.tools(live)
        tail: list[Message] = []
        for round_no in range(self._max_tool_rounds + 1):
            last = round_no == self._max_tool_rounds
            request = self.request_for(
                live,
                turn,
                upstream_text=progress.upstream_text,
                extra=extra,
                tail=tail,
                tools=server_tools or None,
                tool_choice="none" if last else None,
            )
            said, calls = await self._round(live, turn, request, emit, progress, speech)
            if agent is None or not server_tools or not calls:
                return
            if last:
                progress.finish_reason = TOOL_LIMIT
                return
            tail.append(Message("assistant", said, tool_calls=calls))
            for call in calls:
                tail.append(await self._run_tool(agent, live, turn, call, emit))

    async def _round(
        self,
        live: LiveSession,
        turn: TurnInput,
        request: ChatRequest,
        emit: Emit,
        progress: _Progress,
        speech: SpeechSink | None,
    ) -> tuple[str, tuple[ToolCall, ...]]:
        """One model call, streamed to the client; its text and the tool calls it ended with."""
        if progress.routed is not None:  # an earlier round's call: settle it, keep its cost
            await progress.routed.aclose()
            progress.cost_usd += progress.routed.cost_usd
        model = turn.model or live.config.model
        routed = await self._router.open_stream(self._route, request, model=model)
        first_round = progress.upstream_ttft_ms is None
        progress.routed = routed
        progress.fallbacks += routed.fallbacks
        if first_round:
            progress.upstream_ttft_ms = routed.upstream_ttft_ms
            await emit(ResponseStarted(turn.turn_id, routed.target.provider, routed.target.model))
        said: list[str] = []
        calls: tuple[ToolCall, ...] = ()
        async for chunk in routed:
            if chunk.text:
                if progress.ttft_ms is None:
                    progress.ttft_ms = progress.since(turn)
                    if progress.first_event_ms is None:
                        progress.first_event_ms = progress.ttft_ms
                progress.text.append(chunk.text)
                said.append(chunk.text)
                await emit(ResponseDelta(turn.turn_id, chunk.text))
                if speech is not None:
                    speech.feed(chunk.text)
            if chunk.finish_reason is not None:
                progress.finish_reason = chunk.finish_reason
            if chunk.tool_calls:
                if progress.first_event_ms is None:
                    progress.first_event_ms = progress.since(turn)
                calls = chunk.tool_calls
                await _emit_tool_calls(emit, turn, chunk)
        progress.add_usage(routed.usage)
        return "".join(said), calls

    async def _run_tool(
        self, agent: TurnAgent, live: LiveSession, turn: TurnInput, call: ToolCall, emit: Emit
    ) -> Message:
        """Run one server tool call; its result for the model as a `tool` message."""
        result = await agent.run_tool(live, call)
        await emit(ResponseToolResult(turn.turn_id, call.id, result.ok, result.summary))
        if result.change is not None:
            await emit(ChangeProposed(result.change))
        return Message("tool", result.content, tool_call_id=call.id)

    @staticmethod
    async def _answer_safely(
        turn: TurnInput,
        screened: Screened,
        emit: Emit,
        progress: _Progress,
        speech: SpeechSink | None,
    ) -> None:
        """A message about pain, injury or self-harm: the configured safety text, never a model
        call with a coaching prompt."""
        assert screened.answer is not None
        progress.safety_flag = screened.flag
        progress.finish_reason = "safety"
        await emit(ResponseStarted(turn.turn_id, SAFETY_PROVIDER, SAFETY_MODEL))
        progress.ttft_ms = progress.first_event_ms = progress.since(turn)
        progress.text.append(screened.answer)
        await emit(ResponseDelta(turn.turn_id, screened.answer))
        if speech is not None:
            speech.feed(screened.answer)

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
        usage = progress.usage
        if usage is None and routed is not None:  # the vendor said nothing: an estimate
            usage = Usage(
                input_tokens=sum(
                    len(m.content.split()) for m in self.request_for(live, turn).messages
                ),
                output_tokens=len(progress.text),
            )
        usage = usage or Usage()
        safety = progress.safety_flag is not None
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
            provider=routed.target.provider if routed else SAFETY_PROVIDER if safety else None,
            model=routed.target.model if routed else SAFETY_MODEL if safety else None,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            ttft_ms=progress.ttft_ms,
            upstream_ttft_ms=progress.upstream_ttft_ms,
            total_ms=(time.perf_counter() - turn.received_at) * 1000,
            cost_usd=progress.cost_usd + (routed.cost_usd if routed else 0.0),
            fallbacks=[f.to_dict() for f in progress.fallbacks],
            error_code=error.code if error else None,
            focus_ids=live.config.focus_ids,
            audio_in_ms=turn.audio_ms,
            first_audio_ms=first_audio_ms,
            started_at=datetime.now(UTC),
            safety_flag=progress.safety_flag,
        )


async def _emit_tool_calls(emit: Emit, turn: TurnInput, chunk: ChatChunk) -> None:
    """The calls of the model's final chunk, one `response.tool_call` each (none is run here)."""
    for call in chunk.tool_calls:
        await emit(ResponseToolCall(turn.turn_id, call.id, call.name, call.arguments))
