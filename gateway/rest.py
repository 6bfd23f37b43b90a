"""REST reads of the caller's own data: sessions, their interactions and assessments, progress.

Another user's session answers 404 exactly like a missing one. Lists are newest first and page
with `limit` (1-200, default 50) and the `before` cursor from the previous page's `next_before`.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assess.progress import user_progress
from db.assessments import list_assessments
from db.interactions import InteractionRow, list_interactions
from db.sessions import SessionRow, get_session, list_sessions
from gateway.auth import authenticate_request
from gateway.errors import ApiError, json_response
from gateway.ids import valid_session_id
from gateway.persistence import Persistence
from gateway.runtime import gateway_of

__all__ = ["rest_routes"]

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


def rest_routes() -> list[Route]:
    """The REST routes; they read the gateway's `persistence` (503 without a database)."""
    return [
        Route("/v1/sessions", sessions_index, methods=["GET"]),
        Route("/v1/sessions/{session_id}", session_detail, methods=["GET"]),
        Route("/v1/sessions/{session_id}/interactions", session_interactions, methods=["GET"]),
        Route("/v1/sessions/{session_id}/assessments", session_assessments, methods=["GET"]),
        Route("/v1/progress", progress, methods=["GET"]),
    ]


def _persistence(request: Request) -> Persistence:
    found = gateway_of(request).persistence
    if found is None:
        raise ApiError(503, "persistence_unavailable", "this gateway runs without a database")
    return found


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be an integer 1-{MAX_LIMIT}")
    return int(raw)


def _id_cursor(request: Request) -> int | None:
    raw = request.query_params.get("before")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise ApiError(400, "invalid_cursor", "before must be an id from next_before")
    return int(raw)


def _page(data: list[dict[str, Any]], limit: int, cursor: str | None) -> Response:
    return json_response({"data": data, "next_before": cursor if len(data) == limit else None})


async def _own_session(request: Request) -> tuple[Persistence, SessionRow]:
    principal = await authenticate_request(request)
    persistence = _persistence(request)
    session_id = request.path_params["session_id"]
    row = None
    if valid_session_id(session_id):
        row = await get_session(persistence.pool, principal.user_id, session_id)
    if row is None:
        raise ApiError(404, "session_not_found", "no such session")
    return persistence, row


async def sessions_index(request: Request) -> Response:
    principal = await authenticate_request(request)
    persistence = _persistence(request)
    limit = _limit(request)
    rows = await list_sessions(
        persistence.pool, principal.user_id, limit=limit, before=_session_cursor(request)
    )
    cursor = _encode_session_cursor(rows[-1]) if rows else None
    return _page([_session_json(r) for r in rows], limit, cursor)


async def session_detail(request: Request) -> Response:
    _, row = await _own_session(request)
    return json_response(_session_json(row))


async def session_interactions(request: Request) -> Response:
    persistence, session = await _own_session(request)
    limit = _limit(request)
    rows = await list_interactions(
        persistence.pool, session.id, limit=limit, before=_id_cursor(request)
    )
    return _page([_interaction_json(r) for r in rows], limit, str(rows[-1].id) if rows else None)


async def session_assessments(request: Request) -> Response:
    persistence, session = await _own_session(request)
    limit = _limit(request)
    rows = await list_assessments(
        persistence.pool, session.id, limit=limit, before=_id_cursor(request)
    )
    return _page([r.to_json() for r in rows], limit, str(rows[-1].id) if rows else None)


async def progress(request: Request) -> Response:
    principal = await authenticate_request(request)
    persistence = _persistence(request)
    focuses = await user_progress(persistence.pool, principal.user_id)
    return json_response({"user_id": principal.user_id, "data": [f.to_json() for f in focuses]})


def _encode_session_cursor(row: SessionRow) -> str:
    raw = f"{row.opened_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _session_cursor(request: Request) -> tuple[datetime, str] | None:
    raw = request.query_params.get("before")
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        stamp, _, session_id = text.partition("|")
        if not valid_session_id(session_id):
            raise ValueError(session_id)
        return datetime.fromisoformat(stamp), session_id
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", "before must be a next_before value") from exc


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _session_json(row: SessionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "user_id": row.user_id,
        "open": row.closed_at is None,
        "opened_at": row.opened_at.isoformat(),
        "last_active_at": row.last_active_at.isoformat(),
        "closed_at": _iso(row.closed_at),
        "interaction_count": row.interaction_count,
        "summary_status": row.summary_status,
    }


def _interaction_json(row: InteractionRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "session_id": row.session_id,
        "turn_id": row.turn_id,
        "request_id": row.request_id,
        "channel": row.channel,
        "audio_in_ms": row.audio_in_ms,
        "user_text": row.user_text,
        "reply_text": row.reply_text,
        "status": row.status,
        "finish_reason": row.finish_reason,
        "error_code": row.error_code,
        "usage": {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens},
        "timings": {
            "ttft_ms": row.ttft_ms,
            "upstream_ttft_ms": row.upstream_ttft_ms,
            "total_ms": row.total_ms,
            "first_audio_ms": row.first_audio_ms,
        },
        "provider": row.provider,
        "model": row.model,
        "fallbacks": row.fallbacks,
        "focus_ids": row.focus_ids,
        "assess_state": row.assess_state,
        "created_at": row.created_at.isoformat(),
    }
