"""The sim's schema-fitting answers, and the small checker that judges them."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from providers.sim import allowed_ids, answer_for_schema, broken_answer, named_ids, schema_errors
from providers.sim.corpus import SENTENCES, domain_of, sentences

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


TEXTS: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "maxItems": 3}

# The shapes of the coaching skills: feedback, a practice recommendation, an insight.
SKILL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "strengths": TEXTS,
        "weaknesses": TEXTS,
        "tips": {**TEXTS, "minItems": 1},
        "drill_ids": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 3,
            "uniqueItems": True,
        },
        "focus_id": {"type": ["string", "null"]},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 120},
        "reason": {"type": "string", "minLength": 1, "maxLength": 300},
        "text": {"type": "string", "minLength": 1, "maxLength": 600},
    },
    "required": [
        "strengths",
        "weaknesses",
        "tips",
        "drill_ids",
        "focus_id",
        "minutes",
        "reason",
        "text",
    ],
    "additionalProperties": False,
}

STRENGTH_DRILLS = ["bench-pause-reps", "squat-tempo"]
VOICE_DRILLS = ["lip-trills", "filler-pause", "pitch-siren"]
CATALOG = (
    f"ALLOWED_DRILL_IDS: {','.join(VOICE_DRILLS + STRENGTH_DRILLS)}\n"
    "ALLOWED_FOCUS_IDS: breathing, pacing"
)
BENCH = f"Give feedback.\nObservations: bench press 5x5, elbows flare on the last reps.\n{CATALOG}"
SINGING = f"Give feedback.\nObservations: singing scales, breath runs short.\n{CATALOG}"


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("context", [BENCH, SINGING, "", "ALLOWED_DRILL_IDS:"])
def test_skill_answers_fit_and_use_only_the_allowed_ids(seed: int, context: str) -> None:
    answer = answer_for_schema(SKILL, rng=random.Random(seed), context=context)
    assert schema_errors(SKILL, answer) == []
    assert len(set(answer["drill_ids"])) == len(answer["drill_ids"])
    assert answer["minutes"] in range(5, 35, 5)
    if context in (BENCH, SINGING):
        assert 1 <= len(answer["drill_ids"]) <= 3
        assert set(answer["drill_ids"]) <= {*VOICE_DRILLS, *STRENGTH_DRILLS}
        assert answer["focus_id"] in ("breathing", "pacing")
    elif context:
        assert answer["drill_ids"] == []  # an empty catalog: no drill at all


def test_drill_ids_are_clamped_to_the_schema_and_domain_drills_come_first() -> None:
    exactly_two = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}
    schema = {"type": "object", "properties": {"drill_ids": exactly_two}, "required": ["drill_ids"]}
    for seed in range(20):
        answer = answer_for_schema(schema, rng=random.Random(seed), context=BENCH)
        assert sorted(answer["drill_ids"]) == sorted(STRENGTH_DRILLS)
    one = {"type": "object", "properties": {"drill_ids": {**exactly_two, "minItems": 1}}}
    lonely = answer_for_schema(one, rng=random.Random(0), context="ALLOWED_DRILL_IDS: only")
    assert lonely == {"drill_ids": ["only"]}
    padded = answer_for_schema(schema, rng=random.Random(0), context="ALLOWED_DRILL_IDS: only")
    assert padded == {"drill_ids": ["only", "only"]}  # minItems wins over distinct ids


def test_without_a_catalog_drill_ids_are_generic_slugs() -> None:
    answer = answer_for_schema(SKILL, rng=random.Random(3), context="Observations: bench press")
    assert answer["drill_ids"]
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)?", drill) for drill in answer["drill_ids"])


def test_an_enum_of_focus_ids_is_narrowed_to_the_allowed_ones() -> None:
    enum = {"enum": ["clarity", "pacing", "breathing", "structure"]}
    schema = {"type": "object", "properties": {"focus_id": enum, "focus_ids": {"items": enum}}}
    for seed in range(20):
        answer = answer_for_schema(schema, rng=random.Random(seed), context=CATALOG)
        assert answer["focus_id"] in ("breathing", "pacing")
        assert set(answer["focus_ids"]) <= {"breathing", "pacing"}


@pytest.mark.parametrize(("context", "domain"), [(BENCH, "strength"), (SINGING, "voice")])
def test_skill_sentences_are_of_the_prompts_domain(context: str, domain: str) -> None:
    for seed in range(10):
        answer = answer_for_schema(SKILL, rng=random.Random(seed), context=context)
        assert set(answer["strengths"]) <= set(sentences(domain, "praise"))
        assert set(answer["weaknesses"]) <= set(sentences(domain, "concern"))
        assert set(answer["tips"]) <= set(sentences(domain, "tip"))
        assert answer["reason"] in sentences(domain, "reason")
        insight, tip = answer["text"].split(". ", 1)
        assert insight + "." in sentences(domain, "insight") and tip in sentences(domain, "tip")
        assert len(set(answer["tips"])) == len(answer["tips"])  # no tip given twice


def test_the_topic_names_the_domain_before_the_context() -> None:
    singing_coach = "You are a singing coach.\nHow do I bench press more?"
    answer = answer_for_schema(
        SKILL, rng=random.Random(1), context=singing_coach, topic="How do I bench press more?"
    )
    assert set(answer["tips"]) <= set(sentences("strength", "tip"))


def test_skill_answers_are_reproducible() -> None:
    first = answer_for_schema(SKILL, rng=random.Random(7), context=BENCH)
    assert answer_for_schema(SKILL, rng=random.Random(7), context=BENCH) == first
    assert answer_for_schema(SKILL, rng=random.Random(8), context=BENCH) != first


def test_minutes_outside_practice_lengths_stay_within_bounds() -> None:
    schema = {"type": "object", "properties": {"minutes": {"type": "integer", "maximum": 3}}}
    assert answer_for_schema(schema, rng=random.Random(0))["minutes"] <= 3


@pytest.mark.parametrize(
    ("texts", "domain"),
    [
        (("How do I bench press more weight?",), "strength"),
        (("My deadlift form breaks on the last reps",), "strength"),
        (("How do I sing high notes without strain?",), "voice"),
        (("I use too many filler words in my presentation",), "voice"),
        (("My piano scales are uneven at a fast tempo",), "music"),
        (("How do I stay motivated?",), "general"),
        (("Hello", "You are a singing coach."), "voice"),  # the first text naming one wins
        (("Squat tips?", "You are a singing coach."), "strength"),
        (("ALLOWED_DRILL_IDS: lip-trills,pitch-siren\nHow do I stay motivated?",), "general"),
        (
            ('{"focus_ids": ["pacing", "clarity"], "focus_id": "breathing", "lift": "bench"}',),
            "strength",
        ),
    ],
)
def test_domain_of(texts: tuple[str, ...], domain: str) -> None:
    assert domain_of(*texts) == domain


def test_every_domain_has_every_kind_of_whole_sentences() -> None:
    for domain in ("music", "voice", "strength", "general"):
        for kind in ("tip", "praise", "concern", "reason", "insight"):
            assert len(sentences(domain, kind)) >= 4
    assert all(s.endswith(".") and ". " not in s for s in SENTENCES)  # replies split on ". "


def test_named_ids_lines() -> None:
    text = "a\nALLOWED_DRILL_IDS: d1, d2\nALLOWED_FOCUS_IDS: pacing\nALLOWED_DRILL_IDS: d3\nb"
    assert named_ids(text) == {"drill": ["d3"], "focus": ["pacing"]}
    assert named_ids("ALLOWED_IDS: 1,2") == {}


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
