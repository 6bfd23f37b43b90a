"""Checks a model's answer against the rules of its job; anything off raises `InvalidAnswer`."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from assess.errors import InvalidAnswer
from assess.rubric import CATEGORIES, SEVERITIES, AssessKind

__all__ = ["Answer", "FocusAssessment", "parse_answer", "validate_answer"]

_ID_COUNT = {"interaction": "exactly 1", "multi_turn": "2 or more", "session_summary": "0"}


@dataclass(frozen=True, slots=True)
class FocusAssessment:
    focus: str
    category: str
    score: int | None
    explanation: str
    errors: list[dict[str, Any]]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    kind: AssessKind
    rubric_version: str
    interaction_ids: tuple[int, ...]
    assessments: tuple[FocusAssessment, ...]


def parse_answer(text: str) -> Any:
    """The JSON of `text` (tolerating a Markdown code fence around it)."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidAnswer(f"answer is not JSON: {exc}") from exc


def validate_answer(
    data: Any,
    *,
    kind: AssessKind,
    rubric_version: str,
    allowed_ids: Collection[int],
    focus_ids: Sequence[str],
) -> Answer:
    """Validate a parsed answer. `allowed_ids`: the job's interactions (all of its session)."""
    if not isinstance(data, dict):
        raise InvalidAnswer("answer is not a JSON object")
    if data.get("rubric_version") != rubric_version:
        raise InvalidAnswer(f"rubric_version must be {rubric_version!r}")
    if data.get("kind") != kind:
        raise InvalidAnswer(f"kind must be {kind!r}, got {data.get('kind')!r}")
    ids = _ids(data.get("interaction_ids"), kind, allowed_ids)
    items = data.get("assessments")
    if not isinstance(items, dict) or not items:
        raise InvalidAnswer("assessments must be a non-empty object keyed by focus")
    unknown = sorted(set(items) - set(focus_ids))
    if unknown:
        raise InvalidAnswer(f"focus {unknown} was not asked for")
    parsed = tuple(_assessment(focus, items[focus]) for focus in focus_ids if focus in items)
    return Answer(kind, rubric_version, ids, parsed)


def _ids(raw: Any, kind: AssessKind, allowed: Collection[int]) -> tuple[int, ...]:
    if not isinstance(raw, list):
        raise InvalidAnswer("interaction_ids must be a list")
    ids: list[int] = []
    for item in raw:
        text = str(item) if isinstance(item, str | int) and not isinstance(item, bool) else ""
        if not text.isdigit():
            raise InvalidAnswer(f"interaction id {item!r} is not an id")
        ids.append(int(text))
    n = len(set(ids))
    ok = {"interaction": n == 1, "multi_turn": n >= 2, "session_summary": n == 0}[kind]
    if not ok or n != len(ids):
        raise InvalidAnswer(f"kind {kind} needs {_ID_COUNT[kind]} distinct interaction ids")
    foreign = sorted(set(ids) - set(allowed))
    if foreign:
        raise InvalidAnswer(f"interaction ids {foreign} are not of this session's job")
    return tuple(sorted(ids))


def _assessment(focus: str, item: Any) -> FocusAssessment:
    if not isinstance(item, dict):
        raise InvalidAnswer("each assessment must be an object")
    category = item.get("category")
    if category not in CATEGORIES:
        raise InvalidAnswer(f"category must be error or progress, got {category!r}")
    score = item.get("score")
    if score is not None and (type(score) is not int or not 1 <= score <= 10):
        raise InvalidAnswer(f"score must be an integer 1-10 or null, got {score!r}")
    explanation = item.get("explanation", "")
    if not isinstance(explanation, str):
        raise InvalidAnswer("explanation must be a string")
    tags = item.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidAnswer("tags must be a list of strings")
    errors = item.get("errors", [])
    if not isinstance(errors, list):
        raise InvalidAnswer("errors must be a list")
    return FocusAssessment(
        focus, str(category), score, explanation, [_error(e) for e in errors], tuple(tags)
    )


def _error(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidAnswer("each error must be an object")
    key, message, severity = raw.get("key"), raw.get("message"), raw.get("severity")
    if not isinstance(key, str) or not key.strip():
        raise InvalidAnswer("error key must be a non-empty string")
    if not isinstance(message, str):
        raise InvalidAnswer("error message must be a string")
    if severity not in SEVERITIES:
        raise InvalidAnswer(f"error severity must be low, medium or high, got {severity!r}")
    out: dict[str, Any] = {"key": key, "message": message, "severity": severity}
    for optional in ("suggestion", "span"):
        value = raw.get(optional)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InvalidAnswer(f"error {optional} must be a string")
        out[optional] = value
    return out
