"""HTTP errors of the gateway and their one JSON shape.

Every error body is `{"error": {"code", "message", "retryable", "type"}}`: `code`, `message` and
`retryable` are the gateway's contract; `type` makes the same body an OpenAI-style error, so the
official SDKs raise their typed exceptions (401 -> AuthenticationError, 429 -> RateLimitError).

Every path answers in it:
- `ApiError`, raised by a route: its status, code and message (`api_error_handler`);
- Starlette's `HTTPException`: an unknown path is a 404 `not_found`, a wrong method a 405
  `method_not_allowed` with `Allow` (`http_error_handler`);
- any other exception a route lets out: a 500 `internal_error` with a generic message, the
  exception logged once with the request id (`InternalErrors`);
- a WebSocket handshake to an unknown path: a 404 denial response (`route_not_found`).
"""

from __future__ import annotations

import contextlib
import logging
from http import HTTPStatus
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

__all__ = [
    "ApiError",
    "InternalErrors",
    "ResponseAborted",
    "api_error_handler",
    "deny",
    "error_body",
    "error_response",
    "http_error_handler",
    "internal_error_handler",
    "json_response",
    "route_not_found",
]

log = logging.getLogger("coach.errors")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error with its HTTP status, machine code and whether retrying may help."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.headers = headers or {}


def error_body(status: int, code: str, message: str, retryable: bool) -> dict[str, Any]:
    """The one error shape (see the module docstring)."""
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"code": code, "message": message, "retryable": retryable, "type": kind}}


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content), status_code=status, headers=headers, media_type="application/json"
    )


def error_response(exc: ApiError) -> Response:
    body = error_body(exc.status, exc.code, exc.message, exc.retryable)
    return json_response(body, exc.status, exc.headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


# Codes for the statuses Starlette itself raises (routing, form parsing, body limits).
_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}
_PATH_SHOWN = 200  # characters of a refused path repeated in its message


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """Starlette's `HTTPException` (its detail is its own wording: not repeated) as JSON."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    path = request.url.path[:_PATH_SHOWN]
    headers = dict(exc.headers or {})
    if status == 404:
        message = f"no route at {path}"
    elif status == 405:
        method = request.scope.get("method", "GET")
        message = f"{method} is not allowed on {path}"
        if allowed := headers.get("Allow"):
            message += f"; it accepts {allowed}"
    else:
        message = _phrase(status)
    code = _HTTP_CODES.get(status, "internal_error" if status >= 500 else "invalid_request")
    return error_response(ApiError(status, code, message, headers=headers))


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "request refused"


def internal_error() -> ApiError:
    return ApiError(
        500, "internal_error", "the gateway failed to answer this request", retryable=True
    )


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """The last resort, for what fails outside `InternalErrors` (in an outer middleware):
    Starlette sends this response, then re-raises for the server to log."""
    return error_response(internal_error())


class ResponseAborted(Exception):
    """Raised from a streamed body to cut its response off (the connection is closed, the
    client sees a truncated body); whoever raises it has logged why."""


_CLIENT_GONE = (ClientDisconnect, WebSocketDisconnect)


class InternalErrors:
    """Innermost middleware: an exception a route lets out is logged once, as one JSON line
    with the request id and traceback, and answered with a JSON 500 when nothing was sent yet.

    Starlette's own handler for `Exception` (`ServerErrorMiddleware`) answers too, but always
    re-raises, so that uvicorn logs the traceback a second time, outside the request's context;
    nothing is raised past this one. A response that fails after its head went out cannot be
    answered again: it is left unfinished, and uvicorn closes the connection, so the client
    sees a cut-off body rather than one that looks complete. A WebSocket that fails after its
    handshake is closed with 1011; before it, refused with a JSON 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        seen: set[str] = set()

        async def watched(message: Message) -> None:
            seen.add(message["type"])
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except (*_CLIENT_GONE, ResponseAborted):
            return  # the client left, or the route cut its own response off: nothing to add
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "unmatched")
            log.error(
                "unhandled error", exc_info=exc, extra={"route": route, "error": type(exc).__name__}
            )
            # The client may be gone too: what cannot be sent is not sent.
            with contextlib.suppress(OSError, RuntimeError):
                await _answer_failure(scope, receive, send, seen)


async def _answer_failure(scope: Scope, receive: Receive, send: Send, seen: set[str]) -> None:
    if scope["type"] == "http":
        if "http.response.start" not in seen:
            await error_response(internal_error())(scope, receive, send)
        return
    if seen & {"websocket.close", "websocket.http.response.start"}:
        return
    if "websocket.accept" in seen:
        await send({"type": "websocket.close", "code": 1011, "reason": "internal error"})
    else:
        await deny(scope, receive, send, internal_error())


async def deny(scope: Scope, receive: Receive, send: Send, exc: ApiError) -> bool:
    """Refuse a WebSocket handshake with `exc` as a JSON HTTP response (the ASGI
    `websocket.http.response` extension); False, sending nothing, where the server lacks it."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        return False
    await error_response(exc)(scope, receive, send)  # Starlette sends it as a denial
    return True


async def route_not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The router's default: a 404 `HTTPException` for a request (`http_error_handler`
    answers it); a WebSocket handshake is refused with the same JSON 404."""
    if scope["type"] != "websocket":
        raise HTTPException(404)
    path = str(scope.get("path", ""))[:_PATH_SHOWN]
    if not await deny(scope, receive, send, ApiError(404, "not_found", f"no route at {path}")):
        await send({"type": "websocket.close", "code": 1000})  # uvicorn answers it with a 403
