"""Request context as plain ASGI middleware (never `BaseHTTPMiddleware`: it breaks contextvars
and streaming): a request id, the caller's trace context, and one access log line per request.

- `X-Request-ID`: taken from the request when it is a sane token, else generated; echoed on the
  response (and on the WebSocket handshake answer); in `scope["state"]["request_id"]` and in
  `gateway.logs.request_id_var` for every log line written while the request runs.
- `traceparent` / `tracestate` (W3C): attached as the current OpenTelemetry context for the
  whole request or WebSocket, so the gateway's spans are children of the caller's trace.
- The access line logs the path without its query string (where `access_token` may be).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import request_id_var

__all__ = ["RequestContextMiddleware"]

access_log = logging.getLogger("coach.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _request_id(headers: Headers) -> str:
    given = headers.get("x-request-id")
    if given and _REQUEST_ID.match(given):
        return given
    return f"req_{uuid.uuid4().hex[:20]}"


class _Exchange:
    """What the middleware learns of the response while passing its messages on."""

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self.status: int | None = None

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
        elif kind == "websocket.close" and self.status is None:
            self.status = 403  # closed before accept: the handshake is refused
        elif kind == "websocket.http.response.start":
            self.status = message["status"]
        await self._send(message)


class RequestContextMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, log_requests: bool = True) -> None:
        self.app = app
        self._log_requests = log_requests
        self._propagator = TraceContextTextMapPropagator()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        exchange = _Exchange(send, request_id)
        rid_token = request_id_var.set(request_id)
        ctx_token = otel_context.attach(self._propagator.extract(headers))
        started = time.perf_counter()
        try:
            await self.app(scope, receive, exchange.send)
        except Exception:
            exchange.status = exchange.status or 500
            raise
        finally:
            self._finish(scope, exchange.status, time.perf_counter() - started)
            otel_context.detach(ctx_token)
            request_id_var.reset(rid_token)

    def _finish(self, scope: Scope, status: int | None, seconds: float) -> None:
        method = scope.get("method", "WS")
        route = _route_of(scope)
        metrics = _metrics_of(scope)
        if metrics is not None:
            metrics.observe_http(route, method, status or 0, seconds)
        if not self._log_requests:
            return
        extra: dict[str, Any] = {
            "method": method,
            "path": scope.get("path", ""),
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        principal = scope.get("state", {}).get("principal")
        if principal is not None:
            extra["user_id"] = principal.user_id  # hashed by the log filter
        access_log.info("request", extra=extra)


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
