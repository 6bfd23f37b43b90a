"""Request context as plain ASGI middleware (never `BaseHTTPMiddleware`: it breaks contextvars
and streaming): a request id, the caller's trace context, and one access log line per request.

- `X-Request-ID`: taken from the request when it is a sane token, else generated; echoed on the
  response (and on the WebSocket handshake answer); in `scope["state"]["request_id"]` and in
  `gateway.logs.request_id_var` for every log line written while the request runs.
- `traceparent` / `tracestate` (W3C): attached as the current OpenTelemetry context for the
  whole request or WebSocket, so the gateway's spans are children of the caller's trace.
- The access line logs the path without its query string (where `access_token` may be), with
  the ids inside it hashed (`hash_id`, as the log filter hashes user ids). A WebSocket's line
  keeps `status` for the handshake (101, or 403 when refused before accept) and adds
  `close_code`, `close_reason` and `closed_by` (`server` or `client`).
- Rejections (a 4xx, or a WebSocket the server closed for a policy, size, quota or auth reason)
  repeated by one client (its user, else its address) for the same route and status are logged
  once per `log_sample_interval_s` with a `suppressed` count (`gateway.logs.LogSampler`).
  Every other request is logged one line each.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.ids import hash_id
from gateway.logs import LogSampler, request_id_var

__all__ = ["RequestContextMiddleware"]

access_log = logging.getLogger("coach.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# On a path no route matched: a segment of 8+ characters with a digit in it may be an id.
_ID_SEGMENT = re.compile(r"(?<=/)(?=[^/]*[0-9])[^/]{8,}")
# Close codes the server sends to refuse a client: policy, too big, try later, 4401/4403/4429.
_REFUSING_CLOSES = frozenset({1008, 1009, 1013})
# Codes in a `websocket.disconnect` that uvicorn's protocol layer sent, not the client: a frame
# it could not parse (1002, 1007), one past `ws_max_size` (1009), a server shutdown (1012).
_PROTOCOL_CLOSES = frozenset({1002, 1007, 1009, 1012})
DEFAULT_SAMPLE_INTERVAL_S = 10.0
_NO_TRACE = otel_context.Context()  # what extracting from headers without trace context gives


def _request_id(headers: Headers) -> str:
    given = headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return "req_" + os.urandom(10).hex()  # 20 random hex digits, without building a UUID


class _Exchange:
    """What the middleware learns of the exchange while passing its messages on."""

    def __init__(self, send: Send, receive: Receive, request_id: str) -> None:
        self._send = send
        self._receive = receive
        self._request_id = request_id
        self.status: int | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_by: str | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            MutableHeaders(scope=message)["x-request-id"] = self._request_id
        elif kind == "websocket.accept":
            self.status = 101
            headers = list(message.get("headers") or [])
            headers.append((b"x-request-id", self._request_id.encode()))
            message = {**message, "headers": headers}
        elif kind == "websocket.close":
            if self.status is None:
                self.status = 403  # closed before accept: the handshake is refused
            self.note_close(message.get("code", 1000), message.get("reason"), "server")
        elif kind == "websocket.http.response.start":
            self.status = message["status"]
        await self._send(message)

    async def receive(self) -> Message:
        """The app's `receive` on a WebSocket: notes the client's close."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1005)
            self.note_close(code, message.get("reason"), _disconnected_by(code))
        return message

    def note_close(self, code: int, reason: str | None, by: str) -> None:
        if self.closed_by is None:  # the first close is who ended it; the other side answers
            self.close_code, self.close_reason, self.closed_by = code, reason or "", by


def _disconnected_by(code: int) -> str:
    return "server" if code in _PROTOCOL_CLOSES else "client"


class RequestContextMiddleware:
    """See the module docstring; the app passes its `settings.log_sample_interval_s` as
    `sample_interval_s`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        log_requests: bool = True,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
    ) -> None:
        self.app = app
        self._log_requests = log_requests
        self._propagator = TraceContextTextMapPropagator()
        self._sample_interval_s = sample_interval_s
        self._sampler: LogSampler[tuple[Any, ...], dict[str, Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        exchange = _Exchange(send, receive, request_id)
        if kind == "websocket":
            receive = exchange.receive
        rid_token = request_id_var.set(request_id)
        # Without `traceparent` the propagator would read the headers to return an empty context.
        trace = self._propagator.extract(headers) if "traceparent" in headers else _NO_TRACE
        ctx_token = otel_context.attach(trace)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, exchange.send)
        except Exception:
            exchange.status = exchange.status or 500
            if exchange.status == 101:  # uvicorn closes an accepted WebSocket with 1011
                exchange.note_close(1011, "", "server")
            raise
        finally:
            self._finish(scope, exchange, time.perf_counter() - started)
            otel_context.detach(ctx_token)
            request_id_var.reset(rid_token)

    def _finish(self, scope: Scope, exchange: _Exchange, seconds: float) -> None:
        method = scope.get("method", "WS")
        route = _route_of(scope)
        status = exchange.status
        metrics = _metrics_of(scope)
        if metrics is not None:
            metrics.observe_http(route, method, status or 0, seconds)
        if not self._log_requests:
            return
        extra: dict[str, Any] = {
            "method": method,
            "path": _logged_path(scope, route),
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        if exchange.closed_by is not None:
            extra["close_code"] = exchange.close_code
            extra["close_reason"] = exchange.close_reason
            extra["closed_by"] = exchange.closed_by
        principal = scope.get("state", {}).get("principal")
        if principal is not None:
            extra["user_id"] = principal.user_id  # hashed by the log filter
        if _is_rejection(status, exchange) and not self._admit(scope, principal, extra):
            return
        access_log.info("request", extra=extra)

    def _admit(self, scope: Scope, principal: Any, extra: dict[str, Any]) -> bool:
        """Whether this rejection is logged now (the client's first in its interval)."""
        if self._sampler is None:
            self._sampler = LogSampler(self._sample_interval_s, _folded)
        client = scope.get("client")
        who = ("user", principal.user_id) if principal else ("address", client and client[0])
        key = (*who, extra["method"], extra["route"], extra["status"], extra.get("close_code"))
        return self._sampler.admit(key, extra)

    def _lifespan_send(self, send: Send) -> Send:
        """At shutdown, write the counts still folded before the process goes."""

        async def lifespan_send(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown") and self._sampler is not None:
                self._sampler.close()
            await send(message)

        return lifespan_send


def _is_rejection(status: int | None, exchange: _Exchange) -> bool:
    if status is not None and 400 <= status < 500:
        return True
    code = exchange.close_code
    return (
        exchange.closed_by == "server"
        and code is not None
        and (code in _REFUSING_CLOSES or 4000 <= code < 5000)
    )


def _folded(extra: dict[str, Any], count: int, seconds: float) -> None:
    access_log.info(
        "%s more requests like this in the last %.0f s",
        f"{count:,}",
        seconds,
        extra={**extra, "suppressed": count},
    )


def _logged_path(scope: Scope, route: str) -> str:
    """The path with its ids hashed: the matched route's `*_id` parameters, or on an unmatched
    path any segment that looks like an id. Paths without either pay one dict lookup."""
    path: str = scope.get("path", "")
    params = scope.get("path_params")
    if params:
        ids = {v for k, v in params.items() if k.endswith("_id") and isinstance(v, str) and v}
        if ids:
            return "/".join(hash_id(part) if part in ids else part for part in path.split("/"))
        return path
    if route == "unmatched":
        return _ID_SEGMENT.sub(lambda m: hash_id(m.group()), path)
    return path


def _route_of(scope: Scope) -> str:
    """The matched route's template (low cardinality), or `unmatched`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _metrics_of(scope: Scope) -> Any:
    app = scope.get("app")
    state = getattr(app, "state", None)
    gateway = getattr(state, "gateway", None)
    observability = getattr(gateway, "observability", None)
    return getattr(observability, "metrics", None)
