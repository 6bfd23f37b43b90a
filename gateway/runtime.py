"""The running gateway: everything a request handler needs, opened and closed by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from db.changes import ChangeRow
from db.jobs import request_turn_job
from db.pool import DATABASE_UNAVAILABLE
from db.sessions import end_session, queue_summary
from gateway.auth import Authenticator, Principal
from gateway.changes import answer_change
from gateway.drills import DrillCatalog, load_catalog
from gateway.errors import ApiError
from gateway.quotas import QuotaExceeded, Quotas, TurnTicket
from gateway.settings import Settings
from providers.routing import Router
from streams.events import ChangeApplied, ChangeRejected, ServerEvent, SessionEnded
from streams.records import SessionInfo, SessionStore, Stored, TurnRecord
from streams.session import LiveSession, SessionRegistry
from streams.turn import TurnControl, TurnEngine, TurnInput
from streams.voice import SpeechOut

if TYPE_CHECKING:  # imported for the types only: these modules import this one, or are heavy
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.requests import HTTPConnection

    from gateway.agent import GatewayAgent
    from gateway.observability import Observability
    from gateway.persistence import Persistence
    from gateway.scheduler import InsightScheduler
    from providers.stt import SpeechToText
    from providers.tts import TextToSpeech

__all__ = ["Draining", "Gateway", "Overloaded", "Refused", "SessionClosed", "StorageFull"]

log = logging.getLogger("coach.gateway")


class Refused(Exception):
    """The gateway takes no new turn now, for a reason the client may retry after."""

    code = "server_busy"
    message = "the server is at capacity; retry shortly"

    def as_api_error(self) -> ApiError:
        return ApiError(503, self.code, self.message, retryable=True, headers={"Retry-After": "1"})


class Draining(Refused):
    """The gateway is shutting down and takes no new turns."""

    code = "shutting_down"
    message = "the server is restarting"


class Overloaded(Refused):
    """This process already runs `max_running_turns` turns: shed the new one, so the running
    ones keep their latency (the client retries, or another replica takes it)."""


class StorageFull(Refused):
    """Postgres is unreachable and the spool is full: a turn now could not be stored."""

    code = "storage_unavailable"
    message = "the gateway cannot store turns right now; retry shortly"


SessionClosed = Callable[[str, str], Awaitable[None]]
"""`hook(user_id, session_id)`: a session was closed (`session.end`); run as its own task."""


class Stoppable(Protocol):
    async def stop(self, code: int, reason: str) -> None: ...

    def has_running_turn(self) -> bool: ...


@dataclass
class Gateway:
    """Everything a request handler needs, built by the app's lifespan; a handler reaches it
    with `gateway_of(request)`, and through it every part below (the app's state holds nothing
    else). The optional parts are None when not configured: no database, no voice extra."""

    settings: Settings
    auth: Authenticator
    router: Router
    quotas: Quotas
    sessions: SessionStore
    registry: SessionRegistry
    engine: TurnEngine
    stt: SpeechToText | None = None
    tts: TextToSpeech | None = None
    persistence: Persistence | None = None
    observability: Observability | None = None  # set by `open_observability`
    mcp: StreamableHTTPSessionManager | None = None  # set by `gateway.mcp_server.open_mcp`
    scheduler: InsightScheduler | None = None  # set by `gateway.insight_jobs.schedule_insights`
    agent: GatewayAgent | None = None  # guardrails, memories, tools (also `engine.agent`)
    # The drill catalog (`drills_file`, else the shipped one): `create_app` reads it before start.
    drills: DrillCatalog = field(default_factory=load_catalog)
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
    # Called when a session is closed (e.g. the `session_recap` insight); see `end_session`.
    on_session_closed: list[SessionClosed] = field(default_factory=list)
    _hook_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def open_session(self, principal: Principal, session_id: str | None) -> SessionInfo:
        try:
            return await self.sessions.open(principal.user_id, session_id)
        except LookupError as exc:
            raise ApiError(404, "session_not_found", "no such session") from exc
        except DATABASE_UNAVAILABLE as exc:
            raise database_unavailable() from exc

    async def open_admitted(
        self, principal: Principal, session_id: str | None, ticket: TurnTicket
    ) -> SessionInfo:
        """`open_session` for a turn already admitted: its ticket is given back if it fails."""
        try:
            return await self.open_session(principal, session_id)
        except BaseException:
            await self.quotas.refund_turn(ticket)
            raise

    async def admit_turn(self, user_id: str) -> TurnTicket:
        """Raise `Refused` or `QuotaExceeded` if a new turn may not start now; else the turn's
        place in the user's turn quota (given back by `run_turn` if the turn fails)."""
        if self.draining:
            raise Draining()
        limit = self.settings.max_running_turns
        if limit and self.running_turns >= limit:
            raise Overloaded()
        if self.persistence is not None and self.persistence.turns.full:
            raise StorageFull()
        return await self.quotas.check_turn(user_id)

    async def admit_request(self, user_id: str) -> TurnTicket:
        """`admit_turn` for HTTP: quota -> 429, refused -> 503."""
        try:
            return await self.admit_turn(user_id)
        except QuotaExceeded as exc:
            raise quota_error(exc) from exc
        except Refused as exc:
            raise exc.as_api_error() from exc

    async def keep(self, record: TurnRecord) -> Stored | None:
        """`streams.records.TurnKeeper`: store the turn, then charge its tokens to the user (a
        turn that failed is not charged)."""
        stored: Stored | None = "none"
        if self.persistence is not None:
            stored = await self.persistence.turns.put(record)
        if stored is not None and record.status != "failed":
            tokens = record.input_tokens + record.output_tokens
            await self.quotas.record_tokens(record.user_id, tokens)
        return stored

    async def run_turn(
        self,
        live: LiveSession,
        turn: TurnInput,
        emit: Callable[[ServerEvent], Awaitable[None]],
        *,
        control: TurnControl | None = None,
        speak: bool = False,
        ticket: TurnTicket | None = None,
    ) -> TurnRecord:
        """Run one admitted turn inside the user's concurrent-stream slot; with `speak` (and a
        text-to-speech provider) the reply is also spoken, sentence by sentence. The turn is
        kept (`keep`) before its final event; a turn that fails, or never runs, gives its
        `ticket` back."""
        publish = self._publisher(live, emit)
        record: TurnRecord | None = None
        try:
            async with self.quotas.stream_slot(live.user_id):
                self.running_turns += 1
                self._idle.clear()
                try:
                    if speak and self.tts is not None:
                        record = await self._spoken_turn(self.tts, live, turn, publish, control)
                    else:
                        record = await self.engine.reply(live, turn, publish, control=control)
                finally:
                    self.running_turns -= 1
                    if self.running_turns == 0:
                        self._idle.set()
        finally:
            if control is not None:
                control.streamed.set()
            if ticket is not None and (record is None or record.status == "failed"):
                await self.quotas.refund_turn(ticket)
        await self.sessions.touch(live.session_id)
        assert record is not None  # reply() returned it, or raised past this line
        return record

    async def _spoken_turn(
        self,
        tts: TextToSpeech,
        live: LiveSession,
        turn: TurnInput,
        emit: Callable[[ServerEvent], Awaitable[None]],
        control: TurnControl | None,
    ) -> TurnRecord:
        async with SpeechOut(tts, turn.turn_id, emit) as speech:
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

    async def request_assessment(self, live: LiveSession, scope: str, turn_id: str | None) -> None:
        """Queue an assessment now, whatever the filter says: of the latest completed turn (or
        `turn_id`), or with `scope` "session" a summary of the session so far. Its
        `assessment.created` follows on the session. `ApiError` says why not."""
        persistence = self._assessing()
        try:
            if scope == "session":
                job_id: int | None = await queue_summary(
                    persistence.pool, live.user_id, live.session_id
                )
            else:
                job_id = await request_turn_job(
                    persistence.pool, live.user_id, live.session_id, turn_id
                )
        except DATABASE_UNAVAILABLE as exc:
            raise database_unavailable() from exc
        if job_id is None and turn_id is not None:
            message = "the session has no completed turn with this turn_id"
            raise ApiError(404, "unknown_turn", message)
        if job_id is None:
            raise ApiError(404, "no_turn_to_assess", "the session has no completed turn yet")
        persistence.hints.submit(job_id)

    def _assessing(self) -> Persistence:
        if self.persistence is None:
            message = "assessments need a database, and this gateway runs without one"
            raise ApiError(503, "persistence_unavailable", message)
        if not self.persistence.settings.enabled:
            raise ApiError(503, "assessment_disabled", "assessments are turned off on this server")
        return self.persistence

    async def end_session(self, live: LiveSession) -> None:
        """Close the session now (as the idle closer does), queue its summary, tell every
        connection on it (`session.ended`), then start the `on_session_closed` hooks."""
        if self.persistence is None:
            message = "sessions are closed by the database, and this gateway runs without one"
            raise ApiError(503, "persistence_unavailable", message)
        try:
            job_id = await end_session(self.persistence.pool, live.user_id, live.session_id)
        except DATABASE_UNAVAILABLE as exc:
            raise database_unavailable() from exc
        self.persistence.sessions.forget(live.user_id, live.session_id)
        if job_id is not None:
            self.persistence.hints.submit(job_id)
        ended = SessionEnded(live.session_id)
        if self.observability is not None:
            self.observability.deliver(live.session_id, ended)  # sockets and the live feed
        else:
            self.registry.deliver(live.session_id, ended)
        if job_id is not None:  # closed here, not earlier
            self.session_closed(live.user_id, live.session_id)

    def session_closed(self, user_id: str, session_id: str) -> None:
        """Start the `on_session_closed` hooks of a session this process closed (ended, or
        closed for idleness: `JobHints.on_closed`)."""
        for hook in self.on_session_closed:
            task = asyncio.create_task(_run_hook(hook, user_id, session_id))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    def push_to_user(self, user_id: str, event: ServerEvent) -> None:
        """Send `event` to every live session of the user in this process (and their feeds)."""
        for session_id in self.registry.sessions_of(user_id):
            if self.observability is not None:
                self.observability.deliver(session_id, event)
            else:
                self.registry.deliver(session_id, event)

    async def answer_change(self, user_id: str, change_id: str, *, accept: bool) -> ChangeRow:
        """Accept (apply once) or reject the user's pending change, then tell their live
        sessions (`change.applied` / `change.rejected`). `ApiError` says why not."""
        if self.persistence is None:
            raise ApiError(503, "persistence_unavailable", "this gateway runs without a database")
        row = await answer_change(self.persistence.pool, user_id, change_id, accept=accept)
        if accept and row.kind == "memory" and self.agent is not None:
            self.agent.memories_changed(user_id)
        event = ChangeApplied(row.to_json()) if accept else ChangeRejected(row.to_json())
        self.push_to_user(user_id, event)
        return row

    async def drain(self, grace_s: float) -> None:
        """Stop taking turns, let running ones finish, close every socket with 1012 (service
        restart), then let the session close hooks still running (a recap's model call) end;
        all within `grace_s`."""
        self.draining = True
        deadline = asyncio.get_running_loop().time() + grace_s
        if self.running_turns:
            log.info("draining", extra={"running_turns": self.running_turns})
            try:
                async with asyncio.timeout_at(deadline):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("drain timed out", extra={"running_turns": self.running_turns})
        await asyncio.gather(
            *(conn.stop(1012, "server restart") for conn in list(self.connections)),
            return_exceptions=True,
        )
        if self._hook_tasks:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            _, pending = await asyncio.wait(set(self._hook_tasks), timeout=left)
            if pending:
                log.warning("session close hooks cut short", extra={"hooks": len(pending)})


async def _run_hook(hook: SessionClosed, user_id: str, session_id: str) -> None:
    try:
        await hook(user_id, session_id)
    except Exception:
        log.exception("session close hook failed", extra={"session_id": session_id})


def database_unavailable() -> ApiError:
    return ApiError(
        503,
        "database_unavailable",
        "the database is unreachable; retry shortly",
        retryable=True,
        headers={"Retry-After": "2"},
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
    """The gateway serving `conn`: the one thing the app's state holds."""
    gateway: Gateway = conn.app.state.gateway
    return gateway


AsyncCallback = Callable[..., Awaitable[None]]
