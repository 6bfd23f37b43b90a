"""uvicorn's httptools protocol with one addition: `send_now` (`gateway.send_now`) for the body
of a streamed response.

Each streamed token of an SSE response is one piece of its chunked body. `send_now(body)` writes
it as one chunk at once when it can go at once: the response's head sent through ASGI, its body
chunked and not finished, the client connected, the transport not paused. The end of the body
still goes through the ASGI send, which finishes the response (keep-alive, the next pipelined
request).
"""

from __future__ import annotations

import weakref

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.send_now import offer_send_now

__all__ = ["CoachHttpProtocol"]


class CoachHttpProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade to a WebSocket
            offer_send_now(self.scope.setdefault("extensions", {}), _ChunkWriter(cycle))


class _ChunkWriter:
    """`send_now` for one request's response. It holds the request's cycle weakly: the cycle's
    scope holds this writer, and a reference cycle would keep every finished request's objects
    until a full collection."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = weakref.ref(cycle)

    def __call__(self, body: bytes) -> bool:
        cycle = self._cycle()
        if (
            cycle is None
            or not cycle.response_started
            or cycle.response_complete
            or cycle.disconnected
            or not cycle.chunked_encoding
            or cycle.flow.write_paused
            or not body
        ):
            return False
        cycle.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True
