"""The sim's schema-fitting answers, and the small checker that judges them."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from providers.sim import allowed_ids, answer_for_schema, broken_answer, schema_errors

ASSESSMENT: dict[str, Any] = {
    "$defs": {
        "Error": {
            "type": "object",
            "properties": {
                "key": {"type": "string"},
                "message": {"type": "string", "minLength": 10, "maxLength": 40},
                "severity": {"enum": ["minor", "major"]},
                "span": {"type": ["string", "null"]},
            },
            "required": ["key", "message", "severity"],
            "additionalProperties": False,
        },
        "Base": {
            "type": "object",
            "properties": {"rubric_version": {"const": "r3"}},
            "required": ["rubric_version"],
        },
    },
    "allOf": [{"$ref": "#/$defs/Base"}],
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "score": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
        "confidence": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "flagged": {"type": "boolean"},
        "nothing": {"type": "null"},
        "errors": {"type": "array", "items": {"$ref": "#/$defs/Error"}, "maxItems": 2},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "detail": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 100}]},
    },
    "required": ["id", "score", "confidence", "flagged", "errors", "tags", "detail"],
}

BY_KIND: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {
                "kind": {"const": "interaction"},
                "interaction_ids": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "maxItems": 1,
                },
            },
            "required": ["kind", "interaction_ids"],
        },
        {
            "type": "object",
            "properties": {
                "kind": {"const": "multi_turn"},
                "interaction_ids": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            },
            "required": ["kind", "interaction_ids"],
        },
    ]
}


@pytest.mark.parametrize("seed", range(25))
def test_answers_fit_the_schema(seed: int) -> None:
    answer = answer_for_schema(ASSESSMENT, rng=random.Random(seed))
    assert schema_errors(ASSESSMENT, answer) == []
    assert answer["rubric_version"] == "r3"
    assert answer["nothing"] is None
    assert 2 <= len(answer["tags"]) <= 4


def test_strings_are_english_and_keys_are_slugs() -> None:
    answers = [answer_for_schema(ASSESSMENT, rng=random.Random(seed)) for seed in range(10)]
    errors = [error for answer in answers for error in answer["errors"]]
    assert errors
    for error in errors:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)?", error["key"])
        assert " " in error["message"] and 10 <= len(error["message"]) <= 40
    tags = [tag for answer in answers for tag in answer["tags"]]
    assert all(tag[0].isupper() and tag.endswith(".") for tag in tags)  # corpus sentences


def test_allowed_ids_fill_interaction_ids_and_pick_the_branch() -> None:
    one = answer_for_schema(BY_KIND, rng=random.Random(0), context="x\nALLOWED_IDS: 17\ny")
    many = answer_for_schema(BY_KIND, rng=random.Random(0), context="ALLOWED_IDS: 4, 5,6")
    assert one == {"kind": "interaction", "interaction_ids": ["17"]}
    assert many == {"kind": "multi_turn", "interaction_ids": ["4", "5", "6"]}


def test_allowed_ids_line() -> None:
    assert allowed_ids("a\n  ALLOWED_IDS: x1, y2 ,z3\nb") == ["x1", "y2", "z3"]
    assert allowed_ids("ALLOWED_IDS:") == []
    assert allowed_ids("no ids here") is None


@pytest.mark.parametrize("seed", range(10))
def test_broken_answers_break_the_schema(seed: int) -> None:
    for schema in (ASSESSMENT, BY_KIND, {"type": "integer"}, {"type": "array", "minItems": 1}):
        assert schema_errors(schema, broken_answer(schema, rng=random.Random(seed))) != []


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "integer"}, 1.5),
        ({"type": "integer"}, True),
        ({"type": ["string", "null"]}, 3),
        ({"enum": ["a", "b"]}, "c"),
        ({"const": 1}, 2),
        ({"type": "object", "required": ["a"]}, {}),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            {"b": "x"},
        ),
        ({"type": "array", "items": {"type": "string"}}, ["a", 1]),
        ({"type": "array", "minItems": 2}, ["a"]),
        ({"type": "array", "maxItems": 1}, ["a", "b"]),
        ({"type": "string", "maxLength": 3}, "abcd"),
        ({"type": "number", "minimum": 1}, 0.5),
        ({"type": "number", "exclusiveMaximum": 1}, 1),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, None),
        ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 3),
    ],
)
def test_checker_rejects(schema: dict[str, Any], value: object) -> None:
    assert schema_errors(schema, value) != []


def test_checker_accepts() -> None:
    value = {
        "id": "x",
        "score": None,
        "confidence": 0.5,
        "flagged": False,
        "errors": [],
        "tags": ["a", "b"],
        "detail": 150,
        "rubric_version": "r3",
        "nothing": None,
    }
    assert schema_errors(ASSESSMENT, value) == []
