"""Insights (`[insights.TYPE]`): the skill job of one insight type, and `make_insight`, which
the routes, the scheduler and session close call to make one and push it to the user's live
sessions as `insight.created`.

An insight is stored as skill `insight` with the type as its topic. Its cache key holds the
type and the facts it was made from, so a cached insight is never about other facts than the
user's current ones (a session closed since then makes a new one). The fallback is the type's
configured text with the user's facts filled in: only the names of `INSIGHT_FACTS`, through
`str.format_map` over plain values, so a fallback can say nothing but those facts.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from assess.errors import InvalidAnswer
from assess.facts import Facts, user_facts
from gateway.quotas import QuotaExceeded
from gateway.runtime import Gateway
from gateway.scheduler import InsightScheduler
from gateway.settings import InsightSettings, SkillSettings
from gateway.skills import SkillEngine, SkillJob, SkillOutcome, cache_key
from streams.events import InsightCreated

__all__ = [
    "MAX_TEXT",
    "UnknownInsightType",
    "fallback_values",
    "insight_job",
    "insight_json",
    "make_insight",
    "run_insight",
    "schedule_insights",
]

MAX_TEXT = 600

_RULES = f"""Write one insight for the learner from their facts (sessions and minutes in the last 7
days, streak days, top error keys, focus levels) as `text`: plain sentences, at most {MAX_TEXT}
characters, naming the facts it rests on and never inventing others."""


class UnknownInsightType(LookupError):
    """No `[insights.TYPE]` of that name; `known` lists the configured ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.known = known

    @property
    def message(self) -> str:
        return f"unknown insight type; known: {', '.join(self.known)}"


def fallback_values(facts: Facts) -> dict[str, object]:
    """The facts a fallback text may name (`gateway.settings.INSIGHT_FACTS`)."""
    weakest = sorted((f for f in facts.focuses if f.level is not None), key=lambda f: f.level or 0)
    active = [f for f in facts.focuses if f.active]
    focus = (weakest or active or list(facts.focuses))[:1]
    return {
        "sessions_7d": facts.sessions_7d,
        "minutes_7d": round(facts.minutes_7d),
        "streak_days": facts.streak_days,
        "top_error": facts.top_errors[0].key if facts.top_errors else "none",
        "focus": focus[0].focus_id if focus else "your first focus",
    }


def insight_job(user_id: str, kind: str, settings: InsightSettings, facts: Facts) -> SkillJob:
    facts_json = facts.to_json()

    def validate(data: Any) -> dict[str, Any]:
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise InvalidAnswer(f"text must be a non-empty text of at most {MAX_TEXT} characters")
        return {"text": text.strip(), "facts": facts_json}

    def default() -> dict[str, Any]:
        try:
            text = settings.fallback.format_map(fallback_values(facts))
        except (KeyError, ValueError):  # settings check the text; never fail the safe answer
            text = settings.fallback
        return {"text": text[:MAX_TEXT], "facts": facts_json}

    return SkillJob(
        skill="insight",
        topic=kind,
        key=cache_key(user_id, "insight", {"type": kind, "facts": facts_json}),
        instructions=f"{settings.prompt}\n\n{_RULES}",
        data={"insight_type": kind, "facts": facts_json},
        allowed_drills=(),
        schema=_schema(),
        validate=validate,
        fallback=default,
    )


def insight_json(outcome: SkillOutcome) -> dict[str, Any]:
    """`{id, type, text, facts, source, created_at, expires_at}`: the wire form."""
    result = outcome.result
    return {
        "id": str(result.id),
        "type": result.topic,
        "text": result.body.get("text"),
        "facts": result.body.get("facts"),
        "source": outcome.source,
        "created_at": result.created_at.isoformat(),
        "expires_at": result.expires_at.isoformat(),
    }


async def run_insight(
    gateway: Gateway, user_id: str, kind: str, *, refresh: bool = False
) -> dict[str, Any]:
    """The user's insight of type `kind`: the cached one for their current facts unless
    `refresh`, else a new one (model or fallback), stored and pushed as `insight.created`.

    Raises `UnknownInsightType`, `QuotaExceeded` (no model call allowed now), and the
    database's errors; needs a gateway with a database."""
    settings = gateway.settings.insights.get(kind)
    if settings is None:
        raise UnknownInsightType(kind, list(gateway.settings.insights))
    assert gateway.persistence is not None, "insights need the database"
    pool = gateway.persistence.pool
    facts = await user_facts(pool, user_id)
    engine = SkillEngine(
        router=gateway.router, quotas=gateway.quotas, pool=pool, settings=_engine(settings)
    )
    outcome = await engine.run(
        user_id, insight_job(user_id, kind, settings, facts), refresh=refresh
    )
    insight = insight_json(outcome)
    if outcome.source != "cache":
        gateway.push_to_user(user_id, InsightCreated(insight))
    return insight


async def make_insight(gateway: Gateway, user_id: str, kind: str) -> dict[str, Any]:
    """For the scheduler and session close: a new insight of type `kind` unless one for the
    user's current facts is still fresh (then that one, not pushed again). Raises as
    `run_insight` does."""
    return await run_insight(gateway, user_id, kind)


RECAP = "session_recap"


def recap_sessions(gateway: Gateway) -> None:
    """Make a `session_recap` insight whenever this process closes a session (`session.end`, or
    the idle closer), when that type is configured; a hook of `Gateway.on_session_closed`."""
    if RECAP not in gateway.settings.insights or gateway.persistence is None:
        return

    async def recap(user_id: str, session_id: str) -> None:
        with contextlib.suppress(QuotaExceeded):  # no model call is due to this user now
            await make_insight(gateway, user_id, RECAP)

    gateway.on_session_closed.append(recap)


async def schedule_insights(
    gateway: Gateway, stack: contextlib.AsyncExitStack
) -> InsightScheduler | None:
    """Start the scheduler of the insight types that have a `schedule` (`gateway.scheduler`, also
    returned); none without a database or with `[scheduler] enabled = false`. Closing `stack`
    stops it."""
    settings = gateway.settings
    schedules = {k: v.schedule for k, v in settings.insights.items() if v.schedule}
    if gateway.persistence is None or not settings.scheduler.enabled or not schedules:
        return None
    scheduler = InsightScheduler(
        gateway.persistence.pool,
        schedules,
        settings.scheduler,
        functools.partial(make_insight, gateway),
    )
    await scheduler.open()
    stack.push_async_callback(scheduler.aclose)
    gateway.scheduler = scheduler
    return scheduler


def _engine(settings: InsightSettings) -> SkillSettings:
    return SkillSettings(
        max_tokens=settings.max_tokens, cache_ttl_h=settings.ttl_h, fallback=settings.fallback
    )


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}},
        "required": ["text"],
        "additionalProperties": False,
    }
