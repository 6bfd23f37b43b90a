"""`GET /v1/insights` and `POST /v1/insights/{type}`: the HTTP side of insights
(`gateway.insight_jobs` makes them).

Both need the database (503 `database_unavailable` without one). A model failure is never a
5xx: the type's fallback comes back with `source: "fallback"`. An unknown type is a 404 that
lists the configured ones.
"""

from __future__ import annotations

from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from db.pool import DATABASE_UNAVAILABLE
from db.skills import SkillResult, latest_results
from gateway.auth import authenticate_request
from gateway.errors import ApiError, json_response
from gateway.insight_jobs import UnknownInsightType, insight_json, run_insight
from gateway.quotas import QuotaExceeded
from gateway.requests import query_flag
from gateway.runtime import database_unavailable, gateway_of, quota_error
from gateway.skills import SkillOutcome

__all__ = ["insight_routes"]


def insight_routes() -> list[Route]:
    return [
        Route("/v1/insights", list_insights, methods=["GET"]),
        Route("/v1/insights/{type}", post_insight, methods=["POST"]),
    ]


async def list_insights(request: Request) -> Response:
    """Every configured type with the caller's latest insight of it (null when none yet)."""
    principal = await authenticate_request(request)
    gateway = gateway_of(request)
    if gateway.persistence is None:
        raise _no_database()
    try:
        results = await latest_results(gateway.persistence.pool, principal.user_id, "insight")
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    latest = {r.topic: _stored(r) for r in results}
    kinds = list(gateway.settings.insights)
    return json_response({"insights": [{"type": k, "latest": latest.get(k)} for k in kinds]})


async def post_insight(request: Request) -> Response:
    """The caller's insight of the type: cached for their current facts, else a new one."""
    principal = await authenticate_request(request)
    gateway = gateway_of(request)
    kind = request.path_params["type"]
    refresh = query_flag(request, "refresh")
    if kind not in gateway.settings.insights:
        known = UnknownInsightType(kind, list(gateway.settings.insights))
        raise ApiError(404, "unknown_insight_type", known.message)
    if gateway.persistence is None:
        raise _no_database()
    try:
        insight = await run_insight(gateway, principal.user_id, kind, refresh=refresh)
    except QuotaExceeded as exc:
        raise quota_error(exc) from exc
    except DATABASE_UNAVAILABLE as exc:
        raise database_unavailable() from exc
    return json_response({"insight": insight})


def _stored(result: SkillResult) -> dict[str, Any]:
    source: Literal["model", "fallback"] = "fallback" if result.source == "fallback" else "model"
    return insight_json(SkillOutcome(result, source))


def _no_database() -> ApiError:
    return ApiError(503, "database_unavailable", "this gateway runs without a database")
