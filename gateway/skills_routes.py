"""`POST /v1/feedback` and `GET /v1/recommendations/practice`: the HTTP side of the coaching
skills (`gateway.skills` runs them).

Both need the database (503 `database_unavailable` without one); neither answers 5xx when the
model fails: the skill's fallback comes back with `source: "fallback"`. `?refresh=true` asks
the model again instead of answering from the cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from assess.facts import user_facts
from db.pool import DATABASE_UNAVAILABLE, Pool
from gateway.auth import authenticate_request
from gateway.errors import ApiError, json_response
from gateway.quotas import QuotaExceeded
from gateway.requests import query_flag, read_json, wrong_type
from gateway.runtime import Gateway, gateway_of, quota_error
from gateway.runtime import database_unavailable as unreachable
from gateway.settings import SkillSettings
from gateway.skill_jobs import FeedbackRequest, feedback_job, practice_job
from gateway.skills import SkillEngine, SkillJob, SkillOutcome
from streams.prompts import FOCUS_IDS

__all__ = ["MAX_OBSERVATIONS_BYTES", "skills_routes"]

MAX_OBSERVATIONS_BYTES = 16 * 1024
_MAX_BODY = MAX_OBSERVATIONS_BYTES + 4 * 1024
_MAX_KIND, _MAX_ID = 64, 200


def skills_routes() -> list[Route]:
    return [
        Route("/v1/feedback", feedback, methods=["POST"]),
        Route("/v1/recommendations/practice", practice, methods=["GET"]),
    ]


async def feedback(request: Request) -> Response:
    principal = await authenticate_request(request)
    gateway, pool = _gateway(request)
    refresh = query_flag(request, "refresh")
    asked = _feedback_request(await read_json(request, _MAX_BODY))
    settings = gateway.settings.skills.feedback

    async def job() -> SkillJob:
        facts = await user_facts(pool, principal.user_id)
        return feedback_job(principal.user_id, asked, facts, gateway.drills, settings.fallback)

    outcome = await _run(gateway, pool, settings, principal.user_id, job, refresh)
    return json_response({"feedback": _answer(outcome, "subject", *_FEEDBACK_FIELDS, "model")})


async def practice(request: Request) -> Response:
    principal = await authenticate_request(request)
    gateway, pool = _gateway(request)
    refresh = query_flag(request, "refresh")
    settings = gateway.settings.skills.practice

    async def job() -> SkillJob:
        facts = await user_facts(pool, principal.user_id)
        return practice_job(principal.user_id, facts, gateway.drills, settings.fallback)

    outcome = await _run(gateway, pool, settings, principal.user_id, job, refresh)
    return json_response({"recommendation": _answer(outcome, *_PRACTICE_FIELDS)})


_FEEDBACK_FIELDS = ("strengths", "weaknesses", "tips", "drill_ids")
_PRACTICE_FIELDS = ("focus_id", "drill_ids", "minutes", "reason")


async def _run(
    gateway: Gateway,
    pool: Pool,
    settings: SkillSettings,
    user_id: str,
    build: Callable[[], Awaitable[SkillJob]],
    refresh: bool,
) -> SkillOutcome:
    """Build the job (it reads the user's facts) and run it: quota -> 429, database -> 503."""
    engine = SkillEngine(router=gateway.router, quotas=gateway.quotas, pool=pool, settings=settings)
    try:
        return await engine.run(user_id, await build(), refresh=refresh)
    except QuotaExceeded as exc:
        raise quota_error(exc) from exc
    except DATABASE_UNAVAILABLE as exc:
        raise unreachable() from exc


def _answer(outcome: SkillOutcome, *fields: str) -> dict[str, Any]:
    result = outcome.result
    body = {name: result.body.get(name) for name in fields if name != "model"}
    if "model" in fields:
        body["model"] = result.model
    return {
        "id": str(result.id),
        **body,
        "source": outcome.source,
        "created_at": result.created_at.isoformat(),
    }


def _gateway(request: Request) -> tuple[Gateway, Pool]:
    gateway = gateway_of(request)
    if gateway.persistence is None:
        raise ApiError(503, "database_unavailable", "this gateway runs without a database")
    return gateway, gateway.persistence.pool


def _feedback_request(body: dict[str, Any]) -> FeedbackRequest:
    subject = body.get("subject")
    if not isinstance(subject, dict):
        raise wrong_type("subject", "an object {kind, id}", subject)
    kind = _text(subject.get("kind"), "subject.kind", _MAX_KIND)
    subject_id = _text(subject.get("id"), "subject.id", _MAX_ID)
    observations = body.get("observations")
    if not isinstance(observations, dict):
        raise wrong_type("observations", "a JSON object", observations)
    if len(orjson.dumps(observations)) > MAX_OBSERVATIONS_BYTES:
        raise ApiError(
            400,
            "invalid_request",
            f"observations must be at most {MAX_OBSERVATIONS_BYTES} bytes of JSON",
        )
    return FeedbackRequest(kind, subject_id, observations, _focus_ids(body.get("focus_ids")))


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise wrong_type(name, "a string", value)
    if not value.strip() or len(value) > limit:
        raise ApiError(400, "invalid_request", f"{name} must be 1-{limit} characters")
    return value


def _focus_ids(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise wrong_type("focus_ids", "a list of focus ids", value)
    unknown = sorted(set(value) - FOCUS_IDS)
    if unknown or len(value) > 3 or len(set(value)) != len(value):
        known = ", ".join(sorted(FOCUS_IDS))
        raise ApiError(
            400, "invalid_request", f"focus_ids must be at most 3 distinct focuses of: {known}"
        )
    return tuple(value)
