"""The versioned rubric: the instructions, the JSON schema of an answer, and the prompt.

Bump `RUBRIC_VERSION` whenever the wording or the schema changes: every stored assessment and
prompt run carries the version it was made with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from providers.chat import Message

__all__ = [
    "RUBRIC_VERSION",
    "AssessKind",
    "FocusSpec",
    "TurnText",
    "answer_schema",
    "build_messages",
]

RUBRIC_VERSION = "2026-11-rubric-1"
AssessKind = Literal["interaction", "multi_turn", "session_summary"]
SEVERITIES = ("low", "medium", "high")
CATEGORIES = ("error", "progress")

_INSTRUCTIONS = f"""You are a speaking and performance coach assessing a learner.
Rubric {RUBRIC_VERSION}. For each focus listed (the keys of `assessments`), write one
assessment of the learner's own words (not the coach's replies):
- category "error" when the turns mainly show a mistake to fix, "progress" when they show skill;
- score: an integer 1-10 for the learner's level on that focus (1-3 novice, 4-7 developing,
  8-10 mastery), or null when the turns give no evidence for that focus;
- explanation: two sentences at most, concrete and kind;
- errors: each concrete mistake as {{key (snake_case), message, severity low|medium|high,
  suggestion?, span? (the learner's exact words)}}; an empty list when there are none;
- tags: a few short snake_case labels.
Answer with JSON only, fitting the schema. Quote interaction ids exactly as given."""


@dataclass(frozen=True, slots=True)
class FocusSpec:
    id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class TurnText:
    interaction_id: int
    user_text: str
    reply_text: str


def answer_schema(kind: AssessKind, focus_ids: Sequence[str], n_ids: int) -> dict[str, Any]:
    """The JSON schema of an answer for one job: its kind, focuses and id count are fixed."""
    error_item = {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "message": {"type": "string"},
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "suggestion": {"type": "string"},
            "span": {"type": "string"},
        },
        "required": ["key", "message", "severity"],
        "additionalProperties": False,
    }
    item = {
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "score": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
            "explanation": {"type": "string"},
            "errors": {"type": "array", "items": error_item},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["category", "score", "explanation", "errors", "tags"],
        "additionalProperties": False,
    }
    # Keyed by focus id, so "one assessment per focus" is the shape itself.
    per_focus = {
        "type": "object",
        "properties": {focus: item for focus in focus_ids},
        "required": list(focus_ids),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "rubric_version": {"type": "string", "enum": [RUBRIC_VERSION]},
            "kind": {"type": "string", "enum": [kind]},
            "interaction_ids": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": n_ids,
                "maxItems": n_ids,
            },
            "assessments": per_focus,
        },
        "required": ["rubric_version", "kind", "interaction_ids", "assessments"],
        "additionalProperties": False,
    }


def build_messages(
    kind: AssessKind,
    focuses: Sequence[FocusSpec],
    turns: Sequence[TurnText],
    *,
    feedback: str | None = None,
) -> tuple[Message, ...]:
    """The prompt. `feedback`, on a retry, tells the model what was wrong with its last answer."""
    lines = [f"kind: {kind}", "", "Focuses:"]
    lines += [f"- {f.id} ({f.name}): {f.description}" for f in focuses]
    lines += ["", "Turns (oldest first):"]
    for t in turns:
        lines += [
            f"[{t.interaction_id}] LEARNER: {t.user_text}",
            f"[{t.interaction_id}] COACH: {t.reply_text}",
        ]
    lines.append("")
    if kind == "session_summary":
        lines.append("Summarise the whole session; interaction_ids must be an empty list.")
    else:
        lines.append(f"ALLOWED_IDS: {','.join(str(t.interaction_id) for t in turns)}")
        lines.append("interaction_ids must list every one of the allowed ids.")
    if feedback:
        lines.append(f"Your previous answer was rejected: {feedback}. Answer again.")
    return (Message("system", _INSTRUCTIONS), Message("user", "\n".join(lines)))
