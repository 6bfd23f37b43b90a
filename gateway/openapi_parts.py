"""Building blocks of the OpenAPI document (`gateway.openapi`): responses, the error responses
with the codes each answers with, parameters and bodies."""

from __future__ import annotations

from gateway.openapi_types import Json, ref

__all__ = [
    "AUTH_401",
    "BODY_400",
    "FEED_503",
    "REST_503",
    "TURN_503",
    "Codes",
    "Json",
    "error_response",
    "errors",
    "json_content",
    "ok",
    "page_params",
    "public",
    "query_param",
    "read",
    "request_body",
    "retry_after",
    "session_id_param",
    "sse_content",
]

Codes = tuple[str, ...] | None  # the codes an error response answers with; None: any

AUTH_401 = ("unauthenticated", "token_expired", "invalid_token")
BODY_400 = ("invalid_json", "invalid_request", "invalid_text")
TURN_503 = (
    "auth_unavailable",
    "server_busy",
    "shutting_down",
    "storage_unavailable",
    "database_unavailable",
)
REST_503 = ("auth_unavailable", "persistence_unavailable", "database_unavailable")
FEED_503 = ("unavailable", "shutting_down", "auth_unavailable")
_PHRASES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    429: "Quota exceeded",
    500: "Internal error",
    502: "The upstream failed",
    503: "Unavailable",
}


def json_content(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def ok(description: str, content: Json) -> Json:
    return {"description": description, "content": content}


def error_response(status: int, codes: Codes) -> Json:
    """An error response whose `error.code` is one of `codes` (any code when None)."""
    schema = ref("Error")
    described = _PHRASES[status]
    if codes is not None:
        only = {"properties": {"error": {"properties": {"code": {"enum": list(codes)}}}}}
        schema = {"allOf": [schema, only]}
        described += ": " + ", ".join(f"`{c}`" for c in codes)
    response: Json = {"description": described, "content": json_content(schema)}
    if status in (429, 503):
        # Always sent with a 429; with a 503 where the gateway knows when to come back.
        response["headers"] = {"Retry-After": retry_after(required=status == 429)}
    return response


def retry_after(*, required: bool) -> Json:
    seconds = {"type": "string", "pattern": "^[0-9]+$"}
    return {"description": "Seconds to wait", "required": required, "schema": seconds}


def errors(by_status: dict[int, Codes] | None = None) -> Json:
    """The error responses, `{status: codes}`; every operation may answer a 500."""
    responses = {
        str(status): error_response(status, codes) for status, codes in (by_status or {}).items()
    }
    return {**responses, "500": error_response(500, None)}


def request_body(schema_name: str, example: Json | None = None) -> Json:
    media: Json = {"schema": ref(schema_name)}
    if example is not None:
        media["example"] = example
    return {"required": True, "content": {"application/json": media}}


def query_param(name: str, schema: Json, description: str) -> Json:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def session_id_param() -> Json:
    return {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
        "description": "A session id; another user's session answers 404 like a missing one",
    }


def sse_content(event_schema: str) -> Json:
    return {"text/event-stream": {"schema": ref(event_schema)}}


def public(operation: Json) -> Json:
    return {**operation, "security": []}


def page_params(cursor: Json) -> list[Json]:
    limit = {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
    return [
        query_param("limit", limit, "Items per page, newest first"),
        query_param("before", cursor, "`next_before` of the previous page"),
    ]


def read(summary: str, schema_name: str, refusals: dict[int, Codes] | None = None) -> Json:
    """A REST read of the caller's own data, with the error responses `refusals` adds."""
    return {
        "summary": summary,
        "responses": {
            "200": ok(summary, json_content(ref(schema_name))),
            **errors({401: AUTH_401, **(refusals or {}), 503: REST_503}),
        },
    }
