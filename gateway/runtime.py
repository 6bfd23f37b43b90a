"""The running gateway: everything a request handler needs, opened and closed by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gateway.auth import Authenticator, Principal
from gateway.errors import ApiError
from gateway.quotas import QuotaExceeded, Quotas
from gateway.settings import Settings
from providers.routing import Router
from streams.events import ServerEvent
from streams.records import SessionInfo, SessionStore, TurnRecord
from streams.session import LiveSession, SessionRegistry
from streams.turn import TurnControl, TurnEngine, TurnInput
from streams.voice import SpeechOut

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["Draining", "Gateway", "Overloaded"]

log = logging.getLogger("coach.gateway")


class Draining(Exception):
    """The gateway is shutting down and takes no new turns."""


class Overloaded(Exception):
    """This process already runs `max_running_turns` turns: shed the new one, so the running
    ones keep their latency (the client retries, or another replica takes it)."""


class Stoppable(Protocol):
    async def stop(self, code: int, reason: str) -> None: ...

    def has_running_turn(self) -> bool: ...


@dataclass
class Gateway:
    settings: Settings
    auth: Authenticator
    router: Router
    quotas: Quotas
    sessions: SessionStore
    registry: SessionRegistry
    engine: TurnEngine
    stt: Any = None
    tts: Any = None
    persistence: Any = None
    observability: Any = None
    connections: set[Stoppable] = field(default_factory=set)
    draining: bool = False
    running_turns: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    # Observers of every event a turn emits (the live feed hub subscribes here).
    publishers: list[Callable[[LiveSession, ServerEvent], None]] = field(default_factory=list)
    # Where `metrics.push` goes (live coaching); ignored until something subscribes.
    on_metrics: Callable[[LiveSession, dict[str, float]], None] = field(
        default=lambda live, metrics: None
    )

    async def open_session(self, principal: Principal, session_id: str | None) -> SessionInfo:
        try:
            return await self.sessions.open(principal.user_id, session_id)
        except LookupError as exc:
            raise ApiError(404, "session_not_found", "no such session") from exc

    async def admit_turn(self, user_id: str) -> None:
        """Raise `Draining`, `Overloaded` or `QuotaExceeded` if a new turn may not start now."""
        if self.draining:
            raise Draining()
        limit = self.settings.max_running_turns
        if limit and self.running_turns >= limit:
            raise Overloaded()
        await self.quotas.check_turn(user_id)

    async def admit_request(self, user_id: str) -> None:
        """`admit_turn` for HTTP: quota -> 429, draining or at capacity -> 503."""
        try:
            await self.admit_turn(user_id)
        except QuotaExceeded as exc:
            raise quota_error(exc) from exc
        except Draining as exc:
            message = "the server is restarting"
            raise ApiError(503, "shutting_down", message, retryable=True) from exc
        except Overloaded as exc:
            message = "the server is at capacity; retry shortly"
            headers = {"Retry-After": "1"}
            raise ApiError(503, "server_busy", message, retryable=True, headers=headers) from exc

    async def run_turn(
        self,
        live: LiveSession,
        turn: TurnInput,
        emit: Callable[[ServerEvent], Awaitable[None]],
        *,
        control: TurnControl | None = None,
        speak: bool = False,
    ) -> TurnRecord:
        """Run one admitted turn inside the user's concurrent-stream slot; with `speak` (and a
        text-to-speech provider) the reply is also spoken, sentence by sentence. The slot is
        free, and `control.streamed` set, before the turn is stored."""
        publish = self._publisher(live, emit)
        try:
            async with self.quotas.stream_slot(live.user_id):
                self.running_turns += 1
                self._idle.clear()
                try:
                    if speak and self.tts is not None:
                        record = await self._spoken_turn(live, turn, publish, control)
                    else:
                        record = await self.engine.reply(live, turn, publish, control=control)
                finally:
                    self.running_turns -= 1
                    if self.running_turns == 0:
                        self._idle.set()
        finally:
            if control is not None:
                control.streamed.set()
        await self.engine.report(record)
        await self.quotas.record_tokens(live.user_id, record.input_tokens + record.output_tokens)
        await self.sessions.touch(live.session_id)
        return record

    async def _spoken_turn(
        self,
        live: LiveSession,
        turn: TurnInput,
        emit: Callable[[ServerEvent], Awaitable[None]],
        control: TurnControl | None,
    ) -> TurnRecord:
        async with SpeechOut(self.tts, turn.turn_id, emit) as speech:
            try:
                return await self.engine.reply(live, turn, emit, control=control, speech=speech)
            finally:
                await self.quotas.record_audio(live.user_id, speech.audio_seconds)

    def _publisher(
        self, live: LiveSession, emit: Callable[[ServerEvent], Awaitable[None]]
    ) -> Callable[[ServerEvent], Awaitable[None]]:
        if not self.publishers:
            return emit

        async def publish(event: ServerEvent) -> None:
            await emit(event)
            for publisher in self.publishers:
                publisher(live, event)

        return publish

    async def drain(self, grace_s: float) -> None:
        """Stop taking turns, let running ones finish for `grace_s`, then close every socket
        with 1012 (service restart)."""
        self.draining = True
        if self.running_turns:
            log.info("draining", extra={"running_turns": self.running_turns})
            try:
                async with asyncio.timeout(grace_s):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("drain timed out", extra={"running_turns": self.running_turns})
        await asyncio.gather(
            *(conn.stop(1012, "server restart") for conn in list(self.connections)),
            return_exceptions=True,
        )


def quota_error(exc: QuotaExceeded) -> ApiError:
    retry = max(1, round(exc.retry_after_s))
    return ApiError(
        429,
        "rate_limited",
        f"quota {exc.scope} exceeded",
        retryable=True,
        headers={"Retry-After": str(retry)},
    )


def gateway_of(conn: HTTPConnection) -> Gateway:
    gateway: Gateway = conn.app.state.gateway
    return gateway


AsyncCallback = Callable[..., Awaitable[None]]
