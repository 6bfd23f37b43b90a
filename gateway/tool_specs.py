"""The server tools the agent is offered: names, descriptions and JSON-schema parameters.

Read tools answer from the caller's own stored data; write tools only propose a change that the
user must accept (`gateway.changes`). The schemas are what `gateway.tool_args` checks a model's
arguments against, and what the model and MCP clients are shown.
"""

from __future__ import annotations

from typing import Any

from providers.chat import ToolSpec
from streams.prompts import FOCUS_IDS

__all__ = ["READ_TOOLS", "TOOL_SPECS", "WRITE_TOOLS", "tool_specs"]

READ_TOOLS = (
    "get_progress",
    "list_sessions",
    "get_assessments",
    "search_drills",
    "recommend_practice",
)
WRITE_TOOLS = ("propose_focus_change", "remember")

_FOCUS = {"type": "string", "enum": sorted(FOCUS_IDS)}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _limit(default: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": high, "default": default}


TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "get_progress",
        "The user's practice progress: level and band on each focus, which focuses are active, "
        "sessions and minutes in the last 7 days, streak days and the most frequent errors.",
        _object({}),
    ),
    ToolSpec(
        "list_sessions",
        "The user's most recent practice sessions, newest first: when each opened and was last "
        "active, whether it is closed, and how many turns it had.",
        _object({"limit": _limit(5, 20)}),
    ),
    ToolSpec(
        "get_assessments",
        "The user's most recent assessments, newest first: focus, score 1-10, category, a short "
        "explanation and the errors found. Optionally of one session or one focus.",
        _object(
            {
                "session_id": {"type": "string", "minLength": 1, "maxLength": 128},
                "focus_id": _FOCUS,
                "limit": _limit(5, 20),
            }
        ),
    ),
    ToolSpec(
        "search_drills",
        "Search the drill catalog and coaching notes by meaning words (e.g. 'breath support for "
        "long phrases'); optionally only those of one focus. Returns drills (id, title, minutes) "
        "and notes, best match first.",
        _object(
            {
                "query": {"type": "string", "minLength": 1, "maxLength": 200},
                "focus_id": _FOCUS,
                "limit": _limit(5, 10),
            },
            ("query",),
        ),
    ),
    ToolSpec(
        "recommend_practice",
        "Today's practice plan for the user, from their focus levels and recent errors: one "
        "focus, one to three drills, the minutes to spend and why.",
        _object({}),
    ),
    ToolSpec(
        "propose_focus_change",
        "Propose new active focuses for the user (1-3, in order of priority). Nothing changes "
        "until the user accepts the proposal in the app; say so in your answer.",
        _object(
            {
                "focus_ids": {
                    "type": "array",
                    "items": _FOCUS,
                    "minItems": 1,
                    "maxItems": 3,
                    "uniqueItems": True,
                },
                "reason": {"type": "string", "maxLength": 300},
            },
            ("focus_ids",),
        ),
    ),
    ToolSpec(
        "remember",
        "Propose to remember one short fact the user asked you to keep (a goal, a preference, "
        "an instrument). Nothing is stored until the user accepts it in the app.",
        _object({"text": {"type": "string", "minLength": 1, "maxLength": 500}}, ("text",)),
    ),
)


def tool_specs(*, writes: bool = True) -> tuple[ToolSpec, ...]:
    """The tools to offer: every one, or with `writes=False` the read tools only."""
    return TOOL_SPECS if writes else tuple(s for s in TOOL_SPECS if s.name in READ_TOOLS)
