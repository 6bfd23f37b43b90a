"""The coaching skills and the agent in the OpenAPI document (`gateway.openapi`): the paths and
schemas of drills and focuses, feedback and practice, insights, proposed changes and
memories."""

from __future__ import annotations

from gateway.openapi_parts import (
    AUTH_401,
    BODY_400,
    REST_503,
    Json,
    errors,
    query_param,
    read,
    request_body,
)
from gateway.openapi_types import BOOL, INT, NUM, OBJ, STR, array, nullable, obj, ref

__all__ = ["agent_paths", "coaching_schemas", "focus_paths", "insight_paths", "skill_paths"]


def focus_paths() -> Json:
    drills = read("The drill catalog (no database needed)", "DrillList", {400: ("unknown_focus",)})
    drills["parameters"] = [query_param("focus_id", STR, "Only the drills of this focus")]
    choose = read("The caller's active focuses, as chosen", "ActiveFocuses")
    choose["description"] = "At most 3 distinct known focus ids, in order; a 400 changes nothing."
    choose["requestBody"] = request_body("FocusChoice", {"focus_ids": ["pacing", "filler_words"]})
    refused = (*BODY_400, "unknown_focus")
    choose["responses"] |= errors({400: refused, 413: ("body_too_large",), 503: REST_503})
    return {
        "/v1/drills": {"get": drills},
        "/v1/focuses": {"get": read("The focuses a user may choose", "FocusList")},
        "/v1/progress/focuses": {"put": choose},
    }


def skill_paths() -> Json:
    """The coaching skills: never a 5xx when the model fails (`source: "fallback"`)."""
    refresh = query_param(
        "refresh", BOOL, "Ask the model again instead of answering from the cache"
    )
    skill_503 = ("auth_unavailable", "database_unavailable")
    feedback = read("Feedback on a piece of practice", "FeedbackAnswer", {429: ("rate_limited",)})
    feedback["description"] = (
        "The same subject and observations within the cache window answer from the cache "
        "(`source: cache`). `observations` is at most 16 KB of JSON."
    )
    feedback["parameters"] = [refresh]
    feedback["requestBody"] = request_body(
        "FeedbackRequest",
        {"subject": {"kind": "take", "id": "take-1"}, "observations": {"tempo_drift": 0.2}},
    )
    feedback["responses"] |= errors(
        {400: BODY_400, 413: ("body_too_large",), 429: ("rate_limited",), 503: skill_503}
    )
    practice = read("Today's practice recommendation", "PracticeAnswer")
    practice["description"] = "Built from the caller's focus levels and recent assessments."
    practice["parameters"] = [refresh]
    practice["responses"] |= errors(
        {400: ("invalid_request",), 429: ("rate_limited",), 503: skill_503}
    )
    return {
        "/v1/feedback": {"post": feedback},
        "/v1/recommendations/practice": {"get": practice},
    }


def insight_paths() -> Json:
    """Insights of the `[insights.TYPE]` types: never a 5xx when the model fails."""
    listed = read("Every insight type with the caller's latest insight of it", "InsightList")
    listed["description"] = "`latest` is null for a type the caller has no insight of yet."
    kind = {
        "name": "type",
        "in": "path",
        "required": True,
        "schema": STR,
        "example": "daily_summary",
        "description": "An insight type of `[insights.TYPE]`",
    }
    refresh = query_param("refresh", BOOL, "Make a new one instead of answering from the cache")
    made = read("An insight of one type, fresh or cached", "InsightAnswer")
    made["description"] = (
        "Made from the caller's facts (also returned); cached for the type's `ttl_h` while the "
        "facts stay the same. A new one is pushed as `insight.created` to the caller's live "
        "sessions. An unknown type is a 404 whose message lists the known ones."
    )
    made["parameters"] = [kind, refresh]
    made["responses"] |= errors(
        {
            400: ("invalid_request",),
            404: ("unknown_insight_type",),
            429: ("rate_limited",),
            503: ("auth_unavailable", "database_unavailable"),
        }
    )
    return {"/v1/insights": {"get": listed}, "/v1/insights/{type}": {"post": made}}


def agent_paths() -> Json:
    """The agent's proposed changes (confirm-before-write) and the memories it keeps."""
    statuses = {"enum": ["pending", "applied", "rejected", "expired"], "default": "pending"}
    listed = read("The caller's changes in one status, newest first", "ChangeList")
    listed["parameters"] = [query_param("status", statuses, "Which changes")]
    listed["responses"] |= errors({400: ("invalid_request",), 503: REST_503})
    change_id = {
        "name": "change_id",
        "in": "path",
        "required": True,
        "schema": STR,
        "description": "A change id; another user's change answers 404 like a missing one",
    }
    decided = ("change_already_decided",)
    accept = read("Apply a pending change, once", "ChangeAnswer", {404: ("change_not_found",)})
    accept["description"] = (
        "Writes what the change says (new active focuses, or a memory) in the same transaction "
        "that marks it applied. A change decided already is a 409 and nothing is applied again; "
        "an expired change is a 404."
    )
    accept["responses"] |= errors({409: (*decided, "change_invalid"), 503: REST_503})
    reject = read("Reject a pending change", "ChangeAnswer", {404: ("change_not_found",)})
    reject["responses"] |= errors({409: decided, 503: REST_503})
    memory_id = {**change_id, "name": "memory_id", "description": "A memory id"}
    forget = {
        "summary": "Forget one of the caller's memories",
        "responses": {
            "204": {"description": "Forgotten"},
            **errors({401: AUTH_401, 404: ("memory_not_found",), 503: REST_503}),
        },
    }
    return {
        "/v1/changes": {"get": listed},
        "/v1/changes/{change_id}/accept": {"parameters": [change_id], "post": accept},
        "/v1/changes/{change_id}/reject": {"parameters": [change_id], "post": reject},
        "/v1/memories": {"get": read("What the coach remembers of the caller", "MemoryList")},
        "/v1/memories/{memory_id}": {"parameters": [memory_id], "delete": forget},
    }


# ------------------------------------------------------------------ schemas


def coaching_schemas() -> Json:
    return {**focus_schemas(), **skill_schemas(), **insight_schemas(), **agent_schemas()}


def focus_schemas() -> Json:
    focus = obj({"id": STR, "name": STR, "description": STR})
    drill = obj(
        {
            "id": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
            "title": STR,
            "focus_ids": {**array(STR), "minItems": 1},
            "minutes": {"type": "integer", "minimum": 1},
            "description": STR,
        }
    )
    chosen = {**array(STR), "maxItems": 3, "uniqueItems": True}
    return {
        "Drill": drill,
        "DrillList": obj({"drills": array(ref("Drill"))}),
        "Focus": focus,
        "FocusList": obj({"focuses": array(ref("Focus"))}),
        "FocusChoice": obj({"focus_ids": chosen}),
        "ActiveFocuses": obj({"focus_ids": chosen, "focuses": array(ref("Focus"))}),
    }


def skill_schemas() -> Json:
    source = {"enum": ["model", "cache", "fallback"]}
    texts = array(STR)
    drills = {**array(STR), "maxItems": 3}
    subject = obj(
        {
            "kind": {**STR, "minLength": 1, "maxLength": 64},
            "id": {**STR, "minLength": 1, "maxLength": 200},
        }
    )
    feedback = obj(
        {
            "id": STR,
            "subject": obj({"kind": STR, "id": STR}),
            "strengths": texts,
            "weaknesses": texts,
            "tips": {**texts, "minItems": 1},
            "drill_ids": drills,
            "source": source,
            "model": nullable("string"),
            "created_at": STR,
        }
    )
    recommendation = obj(
        {
            "id": STR,
            "focus_id": STR,
            "drill_ids": drills,
            "minutes": {"type": "integer", "minimum": 1},
            "reason": {**STR, "minLength": 1},
            "source": source,
            "created_at": STR,
        }
    )
    return {
        "FeedbackRequest": obj(
            {"subject": subject, "observations": OBJ},
            {"focus_ids": {**array(STR), "maxItems": 3, "uniqueItems": True}},
        ),
        "FeedbackAnswer": obj({"feedback": feedback}),
        "PracticeAnswer": obj({"recommendation": recommendation}),
    }


def insight_schemas() -> Json:
    facts = obj(
        {
            "sessions_7d": INT,
            "minutes_7d": NUM,
            "streak_days": INT,
            "top_errors": array(obj({"key": STR, "count": INT})),
            "focus_levels": array(
                obj(
                    {
                        "focus_id": STR,
                        "level": nullable("integer"),
                        "band": nullable("string"),
                        "samples": INT,
                    }
                )
            ),
        }
    )
    insight = obj(
        {
            "id": STR,
            "type": STR,
            "text": {**STR, "minLength": 1, "maxLength": 600},
            "facts": facts,
            "source": {"enum": ["model", "cache", "fallback"]},
            "created_at": STR,
            "expires_at": STR,
        }
    )
    listed = obj({"type": STR, "latest": {"oneOf": [ref("Insight"), {"type": "null"}]}})
    return {
        "Insight": insight,
        "InsightList": obj({"insights": array(listed)}),
        "InsightAnswer": obj({"insight": ref("Insight")}),
    }


def agent_schemas() -> Json:
    statuses = ["pending", "applied", "rejected", "expired"]
    change = obj(
        {
            "id": STR,
            "kind": {"enum": ["focus_change", "memory"]},
            "payload": OBJ,
            "status": {"enum": statuses},
            "expires_at": STR,
            "created_at": STR,
        }
    )
    memory = obj({"id": STR, "text": STR, "created_at": STR})
    return {
        "Change": change,
        "ChangeList": obj({"changes": array(ref("Change"))}),
        "ChangeAnswer": obj({"change": ref("Change")}),
        "Memory": memory,
        "MemoryList": obj({"memories": array(ref("Memory"))}),
    }
