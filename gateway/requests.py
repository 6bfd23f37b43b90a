"""Reading and checking JSON request bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import ApiError
from streams.events import has_nul

__all__ = ["read_json"]

MAX_BODY_BYTES = 1024 * 1024


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object; 413 past `limit`, 400 when it is not a JSON object or any
    string in it holds NUL (`invalid_text`: Postgres cannot store it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"request body is over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "body_too_large", f"request body is over {limit} bytes")
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"body is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ApiError(400, "invalid_request", "body must be a JSON object")
    # JSON carries NUL only as the escape `\u0000`: without one in the body, nothing to walk.
    if b"\\u0000" in body and has_nul(obj):
        raise ApiError(400, "invalid_text", "text must not contain NUL (U+0000) characters")
    return obj
