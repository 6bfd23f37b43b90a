"""uvicorn's WebSocket protocol with one addition: a send that does not wait, offered to the app
as an ASGI extension (`{"send": ...}` under `SEND_NOW` in the scope's `extensions`; `send_now_of`
finds it).

Each streamed token is one frame. Through ASGI a frame passes five awaited layers (the
connection's send, Starlette's `WebSocket.send`, its exception wrapper, the request-context
middleware, uvicorn's `send` waiting on `writable`) before `websockets` frames it and the
transport writes it. `send_now(data)` frames and writes it at once, from the task that made the
event, when it can go at once: handshake done, no close sent or received, the transport not
paused. Otherwise it writes nothing and returns False, and the caller takes the ASGI path, which
waits for the transport (backpressure) or reports the disconnect as before. Frames still go
through `websockets`' protocol object, so a negotiated compression and its close state hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

__all__ = ["SEND_NOW", "CoachWebSocketProtocol", "SendNow", "send_now_of"]

SEND_NOW = "coach.websocket.send_now"

SendNow = Callable[[bytes], bool]
"""Write one UTF-8 text frame now; False if it could not go now (nothing was written)."""


def send_now_of(scope: Mapping[str, Any]) -> SendNow | None:
    """The connection's `send_now`, when its server offers one."""
    extension = (scope.get("extensions") or {}).get(SEND_NOW)
    return extension["send"] if extension else None


class CoachWebSocketProtocol(WebSocketsSansIOProtocol):
    """See the module docstring."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The app's task was only scheduled: it sees the extension from its first step.
        extensions = self.scope.setdefault("extensions", {})
        extensions[SEND_NOW] = {"send": self.send_now}

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
