"""Reading and checking JSON request bodies.

Every refusal names the field and what it must be, in the gateway's own words
(`message must be a string, not a number`), never a parser's wording.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import ApiError
from streams.events import has_nul, json_error_message, kind_of

__all__ = ["MAX_BODY_BYTES", "optional_field", "query_flag", "read_json", "wrong_type"]

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
        raise ApiError(400, "invalid_json", json_error_message(body, exc, "body")) from exc
    if not isinstance(obj, dict):
        raise wrong_type("the body", "a JSON object", obj)
    # JSON carries NUL only as the escape `\u0000`: without one in the body, nothing to walk.
    if b"\\u0000" in body and has_nul(obj):
        raise ApiError(400, "invalid_text", "text must not contain NUL (U+0000) characters")
    return obj


def wrong_type(name: str, expected: str, value: Any) -> ApiError:
    """The 400 for a field of the wrong JSON type, naming it: `voice must be true or false`."""
    return ApiError(400, "invalid_request", f"{name} must be {expected}, not {kind_of(value)}")


def optional_field(body: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    """`body[name]` when it is absent, null or a `kind`; a 400 naming it otherwise. A JSON
    `true` is never a number, though Python's bool is an int."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise wrong_type(name, expected, value)
    return value


def query_flag(request: Request, name: str) -> bool:
    """A true/false query parameter (`?refresh=true`), false when absent; a 400 naming it
    otherwise."""
    raw = request.query_params.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "invalid_request", f"{name} must be true or false")
    return raw in ("true", "1")
