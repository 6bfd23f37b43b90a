"""uvicorn's httptools protocol with two additions: a deadline for each request head
(slow-loris), and `send_now` (`gateway.send_now`) for the body of a streamed response.

A request head must be complete within `request_head_timeout_s` of the connection being made,
or of the previous response finishing (keep-alive). uvicorn has no such deadline: its
keep-alive timer is armed only after a response and disarmed by the first byte that arrives,
so a client that sends a head a byte at a time, or half a head and nothing more, holds its
connection (and a file descriptor) for as long as it likes. Past the deadline a connection that
had begun a head gets a JSON 408 and is closed; one that had sent nothing is closed.

Each streamed token of an SSE response is one piece of its chunked body. `send_now(body)` writes
it as one chunk at once when it can go at once: the response's head sent through ASGI, its body
chunked and not finished, the client connected, the transport not paused. The end of the body
still goes through the ASGI send, which finishes the response (keep-alive, the next pipelined
request).

What this relies on in uvicorn's `HttpToolsProtocol` (0.55): the parser callbacks
`on_message_begin` and `on_headers_complete`; `on_response_complete`, which a cycle calls when
its response is done; `connection_made`/`connection_lost`; `config.loaded_app`, `loop`,
`transport`, `pipeline`, `cycle`, `scope` and `server_state.default_headers`.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from gateway.send_now import offer_send_now
from gateway.settings import Settings

__all__ = ["CoachHttpProtocol"]

log = logging.getLogger("coach.http")


class CoachHttpProtocol(HttpToolsProtocol):
    """See the module docstring."""

    _head_timer: asyncio.TimerHandle | None = None
    _head_begun = False  # some bytes of the awaited head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timeout_s = _configured_head_timeout_s(self.config)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_begun = True

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        self._head_begun = False
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade to a WebSocket
            offer_send_now(self.scope.setdefault("extensions", {}), _ChunkWriter(cycle))

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # its head is complete: it starts now
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            log.debug("request head incomplete at its deadline: closed", extra={"status": 408})
            self.transport.write(self._timeout_response())
        self.transport.close()

    def _timeout_response(self) -> bytes:
        body = orjson.dumps(
            {
                "error": {
                    "code": "request_timeout",
                    "message": f"the request head did not arrive within {self._head_timeout_s:g} s",
                    "retryable": True,
                }
            }
        )
        head = [b"HTTP/1.1 408 Request Timeout\r\n"]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head.append(b"content-type: application/json\r\n")
        head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        return b"".join(head) + body


def _configured_head_timeout_s(config: Config) -> float:
    """The gateway's `request_head_timeout_s`, from the settings of the app uvicorn serves
    (walking down uvicorn's wrappers to its state's gateway), or its default for another app."""
    app = config.loaded_app
    for _ in range(8):
        gateway = getattr(getattr(app, "state", None), "gateway", None)
        settings = getattr(gateway, "settings", None)
        if isinstance(settings, Settings):
            return settings.request_head_timeout_s
        app = getattr(app, "app", None)
        if app is None:
            break
    default: float = Settings.model_fields["request_head_timeout_s"].default
    return default


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
