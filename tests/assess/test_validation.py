"""Each validation rule rejects; a compliant answer passes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from assess.errors import InvalidAnswer
from assess.rubric import RUBRIC_VERSION, AssessKind
from assess.validation import parse_answer, validate_answer

FOCUSES = ["pacing", "clarity"]


def answer(kind: AssessKind = "interaction", ids: list[Any] | None = None) -> dict[str, Any]:
    return {
        "rubric_version": RUBRIC_VERSION,
        "kind": kind,
        "interaction_ids": ["7"] if ids is None else ids,
        "assessments": {
            "pacing": {
                "category": "progress",
                "score": 7,
                "explanation": "Good pauses.",
                "errors": [
                    {
                        "key": "rushed_end",
                        "message": "The ending was rushed.",
                        "severity": "medium",
                        "suggestion": "Slow down at the close.",
                        "span": "and that's it",
                    }
                ],
                "tags": ["pauses"],
            },
            "clarity": {
                "category": "error",
                "score": None,
                "explanation": "",
                "errors": [],
                "tags": [],
            },
        },
    }


def check(data: Any, kind: AssessKind = "interaction", allowed: tuple[int, ...] = (7, 8, 9)) -> Any:
    return validate_answer(
        data, kind=kind, rubric_version=RUBRIC_VERSION, allowed_ids=allowed, focus_ids=FOCUSES
    )


def test_valid_answers_pass() -> None:
    one = check(answer())
    assert one.interaction_ids == (7,) and [a.focus for a in one.assessments] == FOCUSES
    assert one.assessments[0].errors[0]["span"] == "and that's it"
    assert check(answer("multi_turn", ["8", "7"]), "multi_turn").interaction_ids == (7, 8)
    assert check(answer("session_summary", []), "session_summary").interaction_ids == ()


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        target: Any = data
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return mutate


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (_set(["rubric_version"], "2020-old"), "rubric_version"),
        (_set(["kind"], "multi_turn"), "kind must be"),
        (_set(["interaction_ids"], ["7", "8"]), "exactly 1"),
        (_set(["interaction_ids"], []), "exactly 1"),
        (_set(["interaction_ids"], ["99"]), "not of this session"),
        (_set(["interaction_ids"], ["seven"]), "not an id"),
        (_set(["interaction_ids"], "7"), "must be a list"),
        (_set(["assessments"], {}), "non-empty"),
        (_set(["assessments"], []), "non-empty"),
        (_set(["assessments", "breathing"], {}), "not asked for"),
        (_set(["assessments", "pacing"], "good"), "must be an object"),
        (_set(["assessments", "pacing", "category"], "praise"), "category"),
        (_set(["assessments", "pacing", "score"], 0), "score"),
        (_set(["assessments", "pacing", "score"], 11), "score"),
        (_set(["assessments", "pacing", "score"], 6.5), "score"),
        (_set(["assessments", "pacing", "score"], "7"), "score"),
        (_set(["assessments", "pacing", "score"], True), "score"),
        (_set(["assessments", "pacing", "errors"], {"key": "x"}), "errors must be a list"),
        (_set(["assessments", "pacing", "errors", 0, "severity"], "critical"), "severity"),
        (_set(["assessments", "pacing", "errors", 0, "key"], ""), "key"),
        (_set(["assessments", "pacing", "errors", 0, "message"], KeyError), "message"),
        (_set(["assessments", "pacing", "errors", 0, "suggestion"], 3), "suggestion"),
        (_set(["assessments", "pacing", "errors", 0, "span"], {"start": 1}), "span"),
        (_set(["assessments", "pacing", "tags"], [1]), "tags"),
        (_set(["assessments", "pacing", "explanation"], None), "explanation"),
    ],
)
def test_each_rule_rejects(mutation: Callable[[dict[str, Any]], None], reason: str) -> None:
    data = copy.deepcopy(answer())
    mutation(data)
    with pytest.raises(InvalidAnswer, match=reason):
        check(data)


@pytest.mark.parametrize(
    ("kind", "ids"),
    [("multi_turn", ["7"]), ("multi_turn", ["7", "7"]), ("session_summary", ["7"])],
)
def test_id_counts_per_kind(kind: AssessKind, ids: list[str]) -> None:
    with pytest.raises(InvalidAnswer, match="interaction ids"):
        check(answer(kind, ids), kind)


def test_not_json_and_not_object() -> None:
    with pytest.raises(InvalidAnswer, match="not JSON"):
        parse_answer('{"kind": ')
    with pytest.raises(InvalidAnswer, match="not a JSON object"):
        check(["a"])
    assert parse_answer('```json\n{"a": 1}\n```') == {"a": 1}
