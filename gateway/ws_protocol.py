"""uvicorn's WebSocket protocol with two additions: `send_now` (`gateway.send_now`) for text
frames, and a count of the frames the app never receives (`gateway.inbound`).

Each streamed token is one frame. Through ASGI a frame passes five awaited layers (the
connection's send, Starlette's `WebSocket.send`, its exception wrapper, the request-context
middleware, uvicorn's `send` waiting on `writable`) before `websockets` frames it and the
transport writes it. `send_now(data)` frames and writes it at once when it can go at once:
handshake done, no close sent or received, the transport not paused. Frames still go through
`websockets`' protocol object, so a negotiated compression and its close state hold.

Pings, pongs and continuation frames never reach the app as messages: `websockets` answers a
ping itself and uvicorn writes the pong at once, whatever the rate (and whether or not the
client reads them). Each one is counted here, through the counter the app hooks, so that the
connection's inbound bounds hold for them too. Once the app refuses a client over a bound,
what it still sends is dropped unread (not parsed, not inflated, not answered), and the
connection is closed a moment after the close frame rather than after uvicorn's ten seconds.

A text message that is not UTF-8 is closed with 1007, as RFC 6455 asks and as uvicorn does, but
with a reason and one quiet log line instead of uvicorn's traceback for a client's mistake.

What this relies on in uvicorn's `WebSocketsSansIOProtocol` (0.55): `handle_connect` builds
`scope`; `handle_events` calls `handle_ping()`, `handle_pong(frame)` and `handle_cont(frame)`
for those frames, and `send_receive_event_to_app()` once a message's `frames` are complete (its
`curr_msg_data_type` says "text" or "bytes"; `handle_parser_exception()` ends the connection
after a close); `close_timeout` is read when the app closes; `conn`, `transport`, `writable`,
`handshake_complete`, `close_sent`, `disconnected` and `initial_response` keep their meaning.
Were the handlers renamed, frames would go uncounted (the app's own bounds on messages still
hold), and the tests would say so.
"""

from __future__ import annotations

import logging

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request

from gateway.inbound import FrameCounter, InboundHooks, offer_inbound_hooks
from gateway.send_now import offer_send_now

__all__ = ["CoachWebSocketProtocol"]

log = logging.getLogger("coach.realtime")


class CoachWebSocketProtocol(WebSocketsSansIOProtocol):
    """See the module docstring."""

    REFUSED_CLOSE_S = 1.0  # from the close frame to the end of a refused connection

    _count_frame: FrameCounter | None = None
    _refused = False

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.close_sent:  # the handshake was refused: no app runs
            return
        # The app's task was only scheduled: it sees the extensions from its first step.
        extensions = self.scope.setdefault("extensions", {})
        offer_send_now(extensions, self.send_now)
        offer_inbound_hooks(extensions, InboundHooks(self._watch_frames, self._refuse))

    def _watch_frames(self, count: FrameCounter | None) -> None:
        self._count_frame = count

    def _refuse(self) -> None:
        self._refused = True
        self._count_frame = None
        self.close_timeout = min(self.close_timeout, self.REFUSED_CLOSE_S)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def handle_ping(self) -> None:
        if self._count_frame is not None:
            self._count_frame()
        super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if self._count_frame is not None:
            self._count_frame()
        super().handle_pong(event)

    def handle_cont(self, event: Frame) -> None:
        if self._count_frame is not None:
            self._count_frame()
        super().handle_cont(event)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent and not _utf8(self.frames):
            self.frames = []
            log.info("a text message was not valid UTF-8; closed with 1007")
            self.conn.send_close(1007, "text message is not valid UTF-8")
            self.handle_parser_exception()
            return
        super().send_receive_event_to_app()

    def send_now(self, data: bytes) -> bool:
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
        ):
            return False
        try:
            self.conn.send_text(data)
        except InvalidState:  # the client's close frame came in: the ASGI path reports it
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True


def _utf8(frames: list[bytes]) -> bool:
    try:
        (frames[0] if len(frames) == 1 else b"".join(frames)).decode()
    except UnicodeDecodeError:
        return False
    return True
