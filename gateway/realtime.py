"""`/v1/realtime`: the per-user WebSocket (DESIGN.md, "Realtime WebSocket")."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, assert_never

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from db.focuses import active_focuses
from db.pool import DATABASE_ERRORS
from gateway.auth import (
    SUBPROTOCOL,
    Principal,
    authenticate_request,
    origin_allowed,
    refuse_origin,
)
from gateway.errors import ApiError
from gateway.hands_free import HandsFree
from gateway.ids import new_id, valid_session_id
from gateway.inbound import Exceeded, InboundBounds, inbound_hooks_of
from gateway.openai_compat import GATEWAY_MODEL
from gateway.outbound import Outbound, SocketWriter
from gateway.quotas import QuotaExceeded
from gateway.runtime import Gateway, Refused, gateway_of
from gateway.send_now import send_now_of
from gateway.telemetry import session_span
from providers.errors import ProviderError
from streams.events import (
    AssessmentRequest,
    ChangeAnswer,
    ClientEvent,
    ErrorEvent,
    InputAudioCommit,
    InputText,
    MetricsPush,
    Ping,
    Pong,
    ProtocolError,
    RateLimitedEvent,
    ResponseCancel,
    ResponseCompleted,
    ServerEvent,
    SessionCreated,
    SessionEnd,
    SessionEnded,
    SessionUpdate,
    SessionUpdated,
    Transcript,
    encode,
    parse_client_event,
)
from streams.listening import Utterance
from streams.prompts import FOCUS_IDS
from streams.session import LiveSession, SessionChoices
from streams.turn import TurnControl, TurnInput
from streams.voice import AudioIn

__all__ = ["realtime_routes"]

log = logging.getLogger("coach.realtime")

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_QUOTA = 4429
CATALOG_TIMEOUT_S = 5.0
# What a connection whose session has ended may not do without opening the next session.
_NEEDS_SESSION = (InputText, InputAudioCommit, MetricsPush, AssessmentRequest)


class CatalogUnavailable(Exception):
    """The focus catalog could not be read (Postgres unreachable)."""


class Connection:
    """One client socket joined to one session: a read loop, a write loop, at most one turn."""

    def __init__(
        self, ws: WebSocket, gateway: Gateway, principal: Principal, live: LiveSession
    ) -> None:
        self.ws = ws
        self.gateway = gateway
        self.principal = principal
        self.live = live
        settings = gateway.settings
        self.outbound = Outbound(
            settings.send_queue_size, settings.send_timeout_s, on_overflow=self._on_overflow
        )
        self.writer = SocketWriter(self.outbound, self._send_frame, send_now_of(ws.scope))
        self._turn: asyncio.Task[None] | None = None
        self._turn_control = TurnControl()
        self._turn_id: str | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopping: tuple[int, str] | None = None
        self.audio_in = AudioIn("pcm16", max_utterance_s=gateway.settings.voice.max_utterance_s)
        self.hands_free = HandsFree(
            gateway.stt,
            settings.voice,
            emit=self.send,
            on_started=self._barge_in,
            on_utterance=self._on_utterance,
        )
        self._focuses: frozenset[str] | None = None  # the focus catalog, once read
        # Set by `_serve_session`: how this connection receives its session's events.
        self.sink: Callable[[ServerEvent], None] = self.send
        self._session_ended = False  # `session.ended`: the next turn opens a new session
        self.inbound = InboundBounds(
            settings.inbound_frames_per_s, settings.inbound_bytes_per_s, time.monotonic()
        )

    def send(self, event: ServerEvent) -> None:
        """Queue an event without waiting (control replies, side-channel events)."""
        self.outbound.put_nowait(event)

    def has_running_turn(self) -> bool:
        return self._turn is not None and not self._turn.done()

    async def serve(self) -> None:
        # Two tasks per connection (idle memory matters at thousands of sockets): a server-side
        # stop or a send-queue overflow ends the connection by cancelling the reader.
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            self._reader = tasks.create_task(self._read_loop())
            writer = tasks.create_task(self.writer.run())
            await asyncio.wait({self._reader})
            self.hands_free.stop()
            await self._end_turn()
            if not self.outbound.overflowed:
                # Flush what the turn said last (its final event) before closing.
                self.outbound.close()
                await asyncio.wait({writer}, timeout=1.0)
            writer.cancel()
        self.writer.close()
        code, reason = self._stopping or (1000, "")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.ws.close(code, reason)

    async def _end_turn(self) -> None:
        if self._turn is not None and not self._turn.done():
            if not self._turn_control.replied:  # a turn that has replied is only storing
                self._turn_control.cancel_requested = True
                self._turn.cancel()
            await asyncio.wait({self._turn}, timeout=5.0)

    def _on_overflow(self) -> None:
        log.warning("slow consumer dropped", extra={"queued": self.outbound.qsize()})
        self._end(CLOSE_POLICY, "send queue overflow")

    async def stop(self, code: int, reason: str) -> None:
        """Close from the server side (shutdown, policy)."""
        self._end(code, reason)

    def _end(self, code: int, reason: str) -> None:
        if self._stopping is None:
            self._stopping = (code, reason)
        if self._reader is not None:
            self._reader.cancel()

    async def _send_frame(self, data: bytes) -> None:
        # Once a send found the client gone, Starlette marks the socket closed and would raise
        # on every later send, inside the turn and the writer task: what is still said is dropped.
        if self.ws.application_state is WebSocketState.DISCONNECTED:
            return
        try:
            await self.ws.send_text(data.decode())
        except (WebSocketDisconnect, OSError):
            if self._reader is not None:  # the client went away mid-send
                self._reader.cancel()

    async def _read_loop(self) -> None:
        # The frames the app never receives (protocol pings, ...) count against the same
        # bounds, while this connection reads.
        hooks = inbound_hooks_of(self.ws.scope)
        if hooks is not None:
            hooks.watch(self._on_unseen_frame)
        try:
            await self._read_messages()
        finally:
            if hooks is not None:
                hooks.watch(None)

    async def _read_messages(self) -> None:
        limit = self.gateway.settings.max_message_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                size = len(text) if text.isascii() else len(text.encode())
                if not self._admit(size):
                    return
                if size > limit:
                    self._stopping = (CLOSE_TOO_BIG, f"text frame over {limit} bytes")
                    return
                await self._on_text(text)
            elif (data := message.get("bytes")) is not None:
                if not self._admit(len(data)):
                    return
                self._on_audio(data)

    def _admit(self, nbytes: int) -> bool:
        """Charge a received message to the inbound bounds, before it is parsed."""
        exceeded = self.inbound.charge(nbytes, time.monotonic())
        if exceeded is None:
            return True
        self._refuse_inbound(exceeded)
        return False

    def _on_unseen_frame(self) -> None:
        if self._stopping is not None:
            return
        exceeded = self.inbound.charge(0, time.monotonic())
        if exceeded is not None:
            self._refuse_inbound(exceeded)
            self._end(CLOSE_POLICY, exceeded.reason)

    def _refuse_inbound(self, exceeded: Exceeded) -> None:
        """Past an inbound bound: one `error` event, one log line, then close 1008; what the
        client still sends is not read."""
        if self._stopping is None:
            self._stopping = (CLOSE_POLICY, exceeded.reason)
        if (hooks := inbound_hooks_of(self.ws.scope)) is not None:
            hooks.refuse()
        self.send(ErrorEvent("inbound_rate_exceeded", exceeded.message, retryable=False))
        log.warning(
            "inbound bound exceeded",
            extra={
                "bound": exceeded.unit,
                "per_s": exceeded.per_s,
                "user_id": self.principal.user_id,
            },
        )

    async def _on_text(self, text: str) -> None:
        try:
            event = parse_client_event(text)
        except ProtocolError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=False))
            return
        await self._dispatch(event)

    async def _dispatch(self, event: ClientEvent) -> None:
        ended = self._session_ended and isinstance(event, _NEEDS_SESSION)
        if ended and not await self._next_session():
            return
        match event:
            case Ping():
                self.send(Pong())
            case SessionUpdate(session=patch):
                # Awaited in the read loop: a turn sent after the update runs with it.
                await self._update_session(patch)
            case InputText(text=text, turn_id=turn_id):
                self._start_turn(text, turn_id)
            case ResponseCancel(turn_id=turn_id):
                self._cancel_turn(turn_id)
            case InputAudioCommit(turn_id=turn_id):
                self._commit_audio(turn_id)
            case MetricsPush(metrics=metrics):
                self.gateway.on_metrics(self.live, metrics)
            case AssessmentRequest(scope=scope, turn_id=turn_id):
                await self._request_assessment(scope, turn_id)
            case ChangeAnswer(change_id=change_id, accept=accept):
                await self._answer_change(change_id, accept=accept)
            case SessionEnd():
                await self._end_session()
            case _:
                assert_never(event)

    async def _request_assessment(self, scope: str, turn_id: str | None) -> None:
        try:
            await self.gateway.request_assessment(self.live, scope, turn_id)
        except ApiError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=exc.retryable))

    async def _answer_change(self, change_id: str, *, accept: bool) -> None:
        """`change.accept` / `change.reject`: `change.applied` / `change.rejected` follow on
        every live session of the user; an accepted focus change also becomes this
        connection's focuses (its next turn's prompt)."""
        try:
            row = await self.gateway.answer_change(self.principal.user_id, change_id, accept=accept)
        except ApiError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=exc.retryable))
            return
        if accept and row.kind == "focus_change":
            focus_ids = tuple(str(f) for f in row.payload.get("focus_ids", []))
            self.live.config = dataclasses.replace(self.live.config, focus_ids=focus_ids)

    async def _end_session(self) -> None:
        """Close the session (`session.ended` follows). A reply still streaming is not cut
        short: the client cancels it or waits for it."""
        if self._session_ended:
            self.send(SessionEnded(self.live.session_id))
            return
        if self.has_running_turn():
            if not self._turn_control.replied:
                message = "a reply is still streaming; cancel it or wait for it first"
                self.send(ErrorEvent("turn_in_progress", message, retryable=True))
                return
            assert self._turn is not None
            await asyncio.wait({self._turn}, timeout=5.0)  # stored first: the summary sees it
        try:
            await self.gateway.end_session(self.live)
        except ApiError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=exc.retryable))

    def on_session_ended(self) -> None:
        """The session this socket is on was closed (by this client or another of its
        connections). The socket stays open; its next turn opens a new session."""
        self._session_ended = True

    async def _next_session(self) -> bool:
        """After `session.ended`: join the caller's open session, or a new one (announced with
        `session.created`), keeping this connection's settings; False if none could be opened."""
        try:
            info = await self.gateway.open_session(self.principal, None)
        except ApiError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=exc.retryable))
            return False
        registry = self.gateway.registry
        config = self.live.config
        registry.detach(self.live, self.sink)
        self.live = registry.attach(info, self.sink)
        self.live.config = config
        self._session_ended = False
        limits = self.gateway.settings.public_limits()
        self.send(SessionCreated(info.session_id, self.principal.user_id, limits, info.resumed))
        return True

    async def _update_session(self, patch: dict[str, Any]) -> None:
        """Check the whole patch, then apply it to this connection's settings alone."""
        try:
            choices = await self._choices(patch)
            config = self.live.config.updated(patch, choices)
        except ProtocolError as exc:
            self.send(ErrorEvent(exc.code, exc.message))
            return
        except CatalogUnavailable:
            message = "focus ids cannot be checked right now; nothing was changed"
            self.send(ErrorEvent("focus_catalog_unavailable", message, retryable=True))
            return
        self.live.config = config
        if config.input_audio_format != self.audio_in.format:
            self.audio_in.set_format(config.input_audio_format)  # type: ignore[arg-type]
        self.send(SessionUpdated(config.to_dict()))
        assert self._tasks is not None
        self.hands_free.configure(config, self._tasks)
        if "focus_ids" in patch and self.gateway.persistence is not None:
            assert self._tasks is not None
            self._tasks.create_task(self._save_focuses(config.focus_ids))

    async def _choices(self, patch: dict[str, Any]) -> SessionChoices:
        models = frozenset(target.model for target in self.gateway.router.targets("chat"))
        focus_ids = await self._focus_catalog() if patch.get("focus_ids") else frozenset()
        return SessionChoices(models, focus_ids, default_model=GATEWAY_MODEL)

    async def _focus_catalog(self) -> frozenset[str]:
        """The focus ids a client may pick: the `focuses` table (read once per connection), or
        the seeded list when the gateway runs without a database."""
        persistence = self.gateway.persistence
        if persistence is None:
            return FOCUS_IDS
        if self._focuses is None:
            try:
                self._focuses = await persistence.focus_catalog(CATALOG_TIMEOUT_S)
            except Exception as exc:  # Postgres unreachable: refuse the update, keep the socket
                log.warning("focus catalog unavailable", extra={"error": type(exc).__name__})
                raise CatalogUnavailable() from exc
        return self._focuses

    async def _save_focuses(self, focus_ids: tuple[str, ...]) -> None:
        persistence = self.gateway.persistence
        assert persistence is not None  # only started when the gateway has a database
        try:
            await persistence.save_focuses(self.principal.user_id, focus_ids)
        except ValueError as exc:
            self.send(ErrorEvent("unknown_focus", str(exc)))
        except Exception as exc:  # a failed write must not take the connection down
            log.warning("focus choice not saved", extra={"error": type(exc).__name__})
            message = "the focus choice applies to this session but was not saved"
            self.send(ErrorEvent("focus_not_saved", message, retryable=True))

    def _on_audio(self, frame: bytes) -> None:
        if self.gateway.stt is None:
            self.send(ErrorEvent("audio_unavailable", "voice input is not enabled"))
            return
        if self.hands_free.listening:
            self.hands_free.feed(frame)
            return
        if self.audio_in.nbytes == 0 and self.has_running_turn() and not self._turn_control.replied:
            # New speech while a reply plays is a barge-in: stop the reply at once.
            self._cancel_turn(None)
        try:
            self.audio_in.append(frame)
        except ProviderError as exc:
            self.send(ErrorEvent(exc.code, exc.message))

    def _barge_in(self, turn_id: str) -> bool:
        """Server VAD heard speech start: a reply still streaming stops at once (True)."""
        if not self.has_running_turn() or self._turn_control.replied:
            return False
        self._cancel_turn(None)
        return True

    async def _on_utterance(self, utterance: Utterance) -> None:
        """Server VAD ended an utterance: answer it, as `input_audio.commit` would."""
        if self._session_ended and not await self._next_session():
            return
        if self.has_running_turn() and self._turn_control.cancel_requested:
            assert self._turn is not None  # barged in on: it ends at its next await
            await asyncio.wait({self._turn}, timeout=5.0)
        self._start_turn(None, utterance.turn_id, audio=(utterance.audio, "pcm16"))

    def _commit_audio(self, turn_id: str | None) -> None:
        if self.gateway.stt is None:
            self.send(ErrorEvent("audio_unavailable", "voice input is not enabled"))
            return
        audio, fmt = self.audio_in.take(), self.audio_in.format
        if not audio:
            self.send(ErrorEvent("empty_audio", "no audio was sent before the commit"))
            return
        self._start_turn(None, turn_id, audio=(audio, fmt))

    def _start_turn(
        self, text: str | None, turn_id: str | None, audio: tuple[bytes, str] | None = None
    ) -> None:
        previous = self._turn_control if self.has_running_turn() else None
        if previous is not None and not previous.replied:
            self.send(ErrorEvent("turn_in_progress", "a reply is still streaming", retryable=True))
            return
        assert self._tasks is not None
        self._turn_control = TurnControl()
        self._turn_id = turn_id or new_id("turn")
        received_at = time.perf_counter()  # TTFT counts from here: admission included
        self._turn = self._tasks.create_task(
            self._run_turn(
                self._turn_id,
                text,
                audio,
                self._turn_control,
                after=previous,
                received_at=received_at,
            )
        )
        self._turn.add_done_callback(
            functools.partial(self._on_turn_done, self._turn_id, self._turn_control, received_at)
        )

    def _on_turn_done(
        self, turn_id: str, control: TurnControl, received_at: float, task: asyncio.Task[None]
    ) -> None:
        # The engine ends a turn cancelled while it streams (the task then ends normally). One
        # cancelled before (waiting, admitted, transcribed: possibly before its task first ran)
        # ends here, as every turn does, with nothing asked of a model and nothing kept.
        if task.cancelled() and control.cancel_requested:
            self.send(_cancelled_before_start(turn_id, time.perf_counter() - received_at))

    async def _transcribe(self, turn_id: str, audio: bytes, fmt: str) -> TurnInput | None:
        received = time.perf_counter()
        user_id = self.principal.user_id
        # pcm16's length is known before decoding; other formats are charged after.
        estimate = len(audio) / AudioIn.PCM16_BYTES_PER_S if fmt == "pcm16" else 0.0
        await self.gateway.quotas.check_audio(user_id, estimate)
        assert self.gateway.stt is not None  # no audio is taken without it
        transcript = await self.hands_free.transcribe(turn_id, audio, fmt)
        await self.gateway.quotas.record_audio(user_id, transcript.audio_ms / 1000)
        self.send(Transcript(turn_id, transcript.text, transcript.audio_ms, transcript.stt_ms))
        if not transcript.text.strip():
            self.send(ErrorEvent("no_speech", "no speech was recognised in the audio"))
            return None
        return TurnInput(
            turn_id,
            transcript.text,
            new_id("req"),
            "ws",
            received_at=received + transcript.stt_ms / 1000,
            audio_ms=transcript.audio_ms,
        )

    async def _run_turn(
        self,
        turn_id: str,
        text: str | None,
        audio: tuple[bytes, str] | None,
        control: TurnControl,
        *,
        after: TurnControl | None = None,
        received_at: float,
    ) -> None:
        if after is not None:
            # The previous turn has replied and may still be storing its record: start once
            # it no longer streams (its exchange is in the history this turn sends, its stream
            # slot is free), not after its database write.
            await after.streamed.wait()
        try:
            ticket = await self.gateway.admit_turn(self.principal.user_id)
            try:
                turn = await self._turn_input(turn_id, text, audio, received_at)
            except BaseException:
                await self.gateway.quotas.refund_turn(ticket)
                raise
            if turn is None:
                await self.gateway.quotas.refund_turn(ticket)
                return
            await self.gateway.run_turn(
                self.live,
                turn,
                self.writer.emit,
                control=control,
                speak=self.live.config.voice_output,
                ticket=ticket,
            )
        except ProviderError as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=exc.transient))
        except QuotaExceeded as exc:
            self.send(RateLimitedEvent(exc.scope, int(exc.retry_after_s * 1000)))
        except Refused as exc:
            self.send(ErrorEvent(exc.code, exc.message, retryable=True))
        except Exception:
            log.exception("turn crashed", extra={"turn_id": turn_id})
            self.send(ErrorEvent("internal_error", "the turn failed unexpectedly", retryable=True))

    async def _turn_input(
        self,
        turn_id: str,
        text: str | None,
        audio: tuple[bytes, str] | None,
        received_at: float,
    ) -> TurnInput | None:
        """The turn's text: as typed, or transcribed (None when no speech was heard)."""
        if audio is not None:
            return await self._transcribe(turn_id, *audio)
        assert text is not None
        return TurnInput(turn_id, text, new_id("req"), "ws", received_at=received_at)

    def _cancel_turn(self, turn_id: str | None) -> None:
        replying = self.has_running_turn() and not self._turn_control.replied
        if not replying or (turn_id is not None and turn_id != self._turn_id):
            self.send(ErrorEvent("no_active_turn", "there is no such turn to cancel"))
            return
        assert self._turn is not None
        self._turn_control.cancel_requested = True
        self._turn.cancel()


def _cancelled_before_start(turn_id: str, elapsed_s: float) -> ResponseCompleted:
    """The end of a turn cancelled before a model was asked: no text, no tokens, not stored."""
    return ResponseCompleted(
        turn_id=turn_id,
        text="",
        finish_reason="cancelled",
        usage={"input_tokens": 0, "output_tokens": 0},
        timings={
            "ttft_ms": None,
            "upstream_ttft_ms": None,
            "total_ms": round(elapsed_s * 1000, 1),
            "first_audio_ms": None,
        },
        provider="",
        model="",
        stored="none",
    )


async def realtime_endpoint(ws: WebSocket) -> None:
    gateway = gateway_of(ws)
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    if not origin_allowed(ws, gateway.settings.allowed_origins):
        await refuse_origin(ws, CLOSE_FORBIDDEN)  # before accept: an HTTP 403
        return
    await ws.accept(subprotocol=subprotocol)
    if gateway.draining:
        await ws.close(CLOSE_TRY_LATER, "server restarting")
        return
    try:
        principal = await authenticate_request(ws)
    except ApiError as exc:
        # A key set that cannot be fetched (503) is the gateway's trouble, worth a retry soon.
        code = CLOSE_TRY_LATER if exc.status == 503 else CLOSE_UNAUTHENTICATED
        await ws.close(code, exc.message[:120])
        return
    try:
        async with gateway.quotas.connection_slot(principal.user_id):
            await _serve_session(ws, gateway, principal)
    except QuotaExceeded as exc:
        await ws.close(CLOSE_QUOTA, f"quota {exc.scope} exceeded")


async def _serve_session(ws: WebSocket, gateway: Gateway, principal: Principal) -> None:
    try:
        session_id = ws.query_params.get("session_id")
        if session_id is not None and not valid_session_id(session_id):
            raise ApiError(404, "session_not_found", "no such session")  # as if it did not exist
        info = await gateway.open_session(principal, session_id)
    except ApiError as exc:
        # The database away (503) is worth retrying soon; a foreign or unknown session is not.
        await ws.send_text(encode(ErrorEvent(exc.code, exc.message, retryable=exc.retryable)))
        await ws.close(CLOSE_TRY_LATER if exc.status == 503 else CLOSE_POLICY, exc.message)
        return
    conn: Connection | None = None

    def sink(event: ServerEvent) -> None:
        if conn is not None:
            conn.send(event)
            if isinstance(event, SessionEnded):
                conn.on_session_ended()

    live = gateway.registry.attach(info, sink)
    live.config = dataclasses.replace(live.config, focus_ids=await _saved_focuses(gateway, live))
    conn = Connection(ws, gateway, principal, live)
    conn.sink = sink
    gateway.connections.add(conn)
    try:
        conn.send(
            SessionCreated(
                info.session_id, principal.user_id, gateway.settings.public_limits(), info.resumed
            )
        )
        with (
            session_span("ws", principal.user_id, info.session_id),
            contextlib.suppress(WebSocketDisconnect),
        ):
            await conn.serve()
    finally:
        gateway.connections.discard(conn)
        gateway.registry.detach(conn.live, sink)  # the session it is on now


UNAVAILABLE: tuple[type[BaseException], ...] = (TimeoutError, *DATABASE_ERRORS)


async def _saved_focuses(gateway: Gateway, live: LiveSession) -> tuple[str, ...]:
    """The user's chosen focuses (`PUT /v1/progress/focuses`): a connection's coach plans
    around them until the client sets its own with `session.update`. None without a database,
    or while it is unreachable (the connection goes on without them)."""
    if gateway.persistence is None:
        return ()
    try:
        async with asyncio.timeout(2.0):
            saved = await active_focuses(gateway.persistence.pool, live.user_id)
    except UNAVAILABLE as exc:
        log.warning("saved focuses unavailable: %s", type(exc).__name__)
        return ()
    return tuple(focus.id for focus in saved)


def realtime_routes() -> list[WebSocketRoute]:
    return [WebSocketRoute("/v1/realtime", realtime_endpoint)]
