"""The two skills of `POST /v1/feedback` and `GET /v1/recommendations/practice`: what each asks
the model (instructions, data, schema), how its answer is checked, and its safe default.

Drill ids are named in the prompt (`ALLOWED_DRILL_IDS`) rather than fixed in the schema, and
checked against the catalog afterwards: an answer naming any other drill is invalid, and the
caller gets the fallback instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from assess.errors import InvalidAnswer
from assess.facts import Facts
from assess.work import DEFAULT_FOCUSES
from gateway.drills import DrillCatalog
from gateway.skills import SkillJob, cache_key, drill_ids_in, texts_in

__all__ = ["FeedbackRequest", "feedback_job", "practice_focuses", "practice_job"]

MAX_ITEMS = 4  # strengths, weaknesses, tips
MAX_DRILLS = 3
MINUTES = (5, 90)

_FEEDBACK = """You are a practice coach giving feedback on one piece of practice (a recording's
analysis, a session, a take). From the observations, write:
- strengths: what went well, each a short concrete sentence;
- weaknesses: what to improve, each a short concrete sentence;
- tips: what to do next time, each one actionable sentence;
- drill_ids: one to three drills that train the weaknesses."""

_PRACTICE = """You are a practice coach planning today's practice. From the learner's facts
(focus levels, recent errors, how much they practised), pick one focus (usually the weakest or
the one with the most recent errors), one to three drills for it, the minutes to spend, and a
reason of one or two sentences that names the facts it rests on."""


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    """`POST /v1/feedback`'s body, already checked."""

    subject_kind: str
    subject_id: str
    observations: dict[str, Any]
    focus_ids: tuple[str, ...]

    def subject(self) -> dict[str, str]:
        return {"kind": self.subject_kind, "id": self.subject_id}


def feedback_job(
    user_id: str, request: FeedbackRequest, facts: Facts, catalog: DrillCatalog, fallback: str
) -> SkillJob:
    focuses = request.focus_ids or _active(facts)
    allowed = tuple(d.id for d in catalog.for_focuses(focuses))
    parts = {
        "subject": request.subject(),
        "observations": request.observations,
        "focus_ids": list(request.focus_ids),
    }

    def validate(data: Any) -> dict[str, Any]:
        body = _object(data)
        return {
            "subject": request.subject(),
            **{name: texts_in(body.get(name), name, at_most=MAX_ITEMS) for name in _TEXTS},
            "drill_ids": drill_ids_in(body.get("drill_ids"), allowed, at_most=MAX_DRILLS),
        }

    def default() -> dict[str, Any]:
        return {
            "subject": request.subject(),
            "strengths": [],
            "weaknesses": [],
            "tips": [fallback],
            "drill_ids": list(allowed[:2]),
        }

    return SkillJob(
        skill="feedback",
        topic=request.subject_kind,
        key=cache_key(user_id, "feedback", parts),
        instructions=_FEEDBACK,
        data={**parts, "focus_ids": list(focuses), "facts": facts.to_json()},
        allowed_drills=allowed,
        schema=_feedback_schema(),
        validate=validate,
        fallback=default,
    )


def practice_focuses(facts: Facts) -> tuple[str, ...]:
    """The focuses a recommendation may pick: the active ones, else those with scores, else the
    defaults; the weakest (lowest level, unscored last) first."""
    chosen = [f for f in facts.focuses if f.active] or [f for f in facts.focuses if f.samples]
    if not chosen:
        return DEFAULT_FOCUSES
    ranked = sorted(chosen, key=lambda f: 11 if f.level is None else f.level)
    return tuple(f.focus_id for f in ranked)


def practice_job(user_id: str, facts: Facts, catalog: DrillCatalog, fallback: str) -> SkillJob:
    focuses = practice_focuses(facts)
    allowed = tuple(d.id for d in catalog.for_focuses(focuses))

    def validate(data: Any) -> dict[str, Any]:
        body = _object(data)
        focus_id = body.get("focus_id")
        if focus_id not in focuses:
            raise InvalidAnswer(f"focus_id must be one of {list(focuses)}")
        minutes = body.get("minutes")
        if type(minutes) is not int or not MINUTES[0] <= minutes <= MINUTES[1]:
            raise InvalidAnswer(f"minutes must be an integer {MINUTES[0]}-{MINUTES[1]}")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidAnswer("reason must be a non-empty text")
        ids = drill_ids_in(body.get("drill_ids"), allowed, at_most=MAX_DRILLS)
        if not ids:
            raise InvalidAnswer("drill_ids must name at least one drill")
        return {"focus_id": focus_id, "drill_ids": ids, "minutes": minutes, "reason": reason}

    def default() -> dict[str, Any]:
        drills = catalog.for_focuses(focuses[:1])[:2]
        minutes = sum(d.minutes for d in drills) or 10
        return {
            "focus_id": focuses[0],
            "drill_ids": [d.id for d in drills],
            "minutes": min(max(minutes, MINUTES[0]), MINUTES[1]),
            "reason": fallback,
        }

    return SkillJob(
        skill="practice",
        topic="",
        key=cache_key(user_id, "practice", {"focuses": list(focuses)}),
        instructions=_PRACTICE,
        data={"focus_ids": list(focuses), "facts": facts.to_json()},
        allowed_drills=allowed,
        schema=_practice_schema(focuses),
        validate=validate,
        fallback=default,
    )


_TEXTS = ("strengths", "weaknesses", "tips")


def _active(facts: Facts) -> tuple[str, ...]:
    return tuple(f.focus_id for f in facts.focuses if f.active)


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidAnswer("answer is not a JSON object")
    return data


def _texts_schema() -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_ITEMS}


def _drills_schema(low: int) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "minItems": low, "maxItems": MAX_DRILLS}


def _feedback_schema() -> dict[str, Any]:
    properties = {name: _texts_schema() for name in _TEXTS}
    return {
        "type": "object",
        "properties": {**properties, "drill_ids": _drills_schema(0)},
        "required": [*_TEXTS, "drill_ids"],
        "additionalProperties": False,
    }


def _practice_schema(focuses: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "focus_id": {"type": "string", "enum": list(focuses)},
            "drill_ids": _drills_schema(1),
            "minutes": {"type": "integer", "minimum": MINUTES[0], "maximum": MINUTES[1]},
            "reason": {"type": "string"},
        },
        "required": ["focus_id", "drill_ids", "minutes", "reason"],
        "additionalProperties": False,
    }
