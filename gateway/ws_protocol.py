"""uvicorn's WebSocket protocol with one addition: `send_now` (`gateway.send_now`) for text frames.

Each streamed token is one frame. Through ASGI a frame passes five awaited layers (the
connection's send, Starlette's `WebSocket.send`, its exception wrapper, the request-context
middleware, uvicorn's `send` waiting on `writable`) before `websockets` frames it and the
transport writes it. `send_now(data)` frames and writes it at once when it can go at once:
handshake done, no close sent or received, the transport not paused. Frames still go through
`websockets`' protocol object, so a negotiated compression and its close state hold.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from gateway.send_now import offer_send_now

__all__ = ["CoachWebSocketProtocol"]


class CoachWebSocketProtocol(WebSocketsSansIOProtocol):
    """See the module docstring."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task was only scheduled: it sees the extension from its first step.
        offer_send_now(self.scope.setdefault("extensions", {}), self.send_now)

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
