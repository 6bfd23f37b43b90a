"""The agent's data over HTTP: the caller's proposed changes and memories.

- `GET /v1/changes?status=pending|applied|rejected|expired` (default pending), newest first.
- `POST /v1/changes/{change_id}/accept` applies the change once; `/reject` drops it. Both answer
  `{change}`. An unknown, foreign or expired change is a 404 `change_not_found`; a change
  decided already is a 409 `change_already_decided` (nothing is applied twice); a change that can
  no longer be applied (its focuses left the catalog) is a 409 `change_invalid`, and stays
  pending.
- `GET /v1/memories`, `DELETE /v1/memories/{memory_id}` (another user's memory is a 404).

All need the database: 503 without one, or while it is unreachable.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.changes import STATUSES, list_changes
from db.memories import delete_memory, list_memories
from db.pool import DATABASE_UNAVAILABLE, Pool
from gateway.auth import authenticate_request
from gateway.errors import ApiError, json_response
from gateway.runtime import database_unavailable, gateway_of

__all__ = ["agent_routes"]

_CHANGE_ID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
_MEMORY_ID = re.compile(r"^[0-9]{1,18}$")


def agent_routes() -> list[Route]:
    return [
        Route("/v1/changes", changes, methods=["GET"]),
        Route("/v1/changes/{change_id}/accept", accept, methods=["POST"]),
        Route("/v1/changes/{change_id}/reject", reject, methods=["POST"]),
        Route("/v1/memories", memories, methods=["GET"]),
        Route("/v1/memories/{memory_id}", forget, methods=["DELETE"]),
    ]


async def changes(request: Request) -> Response:
    principal = await authenticate_request(request)
    status = request.query_params.get("status", "pending")
    if status not in STATUSES:
        message = f"status must be one of {', '.join(STATUSES)}"
        raise ApiError(400, "invalid_request", message)
    pool = _pool(request)
    try:
        rows = await list_changes(pool, principal.user_id, status)
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    return json_response({"changes": [r.to_json() for r in rows]})


async def accept(request: Request) -> Response:
    return await _decide(request, accept=True)


async def reject(request: Request) -> Response:
    return await _decide(request, accept=False)


async def _decide(request: Request, *, accept: bool) -> Response:
    principal = await authenticate_request(request)
    change_id = request.path_params["change_id"]
    _pool(request)  # 503 without a database, before the id is looked at
    if not _CHANGE_ID.match(change_id):  # not an id the gateway makes: no query for it
        raise ApiError(404, "change_not_found", "no such pending change (unknown, or expired)")
    row = await gateway_of(request).answer_change(principal.user_id, change_id, accept=accept)
    return json_response({"change": row.to_json()})


async def memories(request: Request) -> Response:
    principal = await authenticate_request(request)
    pool = _pool(request)
    try:
        rows = await list_memories(pool, principal.user_id)
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    return json_response({"memories": [r.to_json() for r in rows]})


async def forget(request: Request) -> Response:
    principal = await authenticate_request(request)
    memory_id = request.path_params["memory_id"]
    pool = _pool(request)
    try:
        found = _MEMORY_ID.match(memory_id) is not None and await delete_memory(
            pool, principal.user_id, int(memory_id)
        )
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    if not found:
        raise ApiError(404, "memory_not_found", "no such memory")
    agent = gateway_of(request).agent
    if agent is not None:
        agent.memories_changed(principal.user_id)
    return Response(status_code=204)


def _pool(request: Request) -> Pool:
    persistence = gateway_of(request).persistence
    if persistence is None:
        raise ApiError(503, "persistence_unavailable", "this gateway runs without a database")
    return persistence.pool
