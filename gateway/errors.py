"""HTTP errors of the gateway and their one JSON shape.

Every error body is `{"error": {"code", "message", "retryable", "type"}}`: `code`, `message` and
`retryable` are the gateway's contract; `type` makes the same body an OpenAI-style error, so the
official SDKs raise their typed exceptions (401 -> AuthenticationError, 429 -> RateLimitError).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ApiError", "api_error_handler", "error_body", "json_response"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
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
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"error": {"code": code, "message": message, "retryable": retryable, "type": kind}}


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(content), status_code=status, headers=headers, media_type="application/json"
    )


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    body = error_body(exc.status, exc.code, exc.message, exc.retryable)
    return json_response(body, exc.status, exc.headers)
