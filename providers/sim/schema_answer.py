"""JSON answers generated to fit a JSON Schema (and, on request, answers that break it).

Generation is generic: objects get every property, arrays a few (distinct) items, strings
plausible English from the corpus (key-like names such as `key`, `*_id` or `*_ids` get short
slugs), numbers a value within their bounds. `anyOf`/`oneOf` pick one branch, `allOf` merges,
local `$ref`s are followed.

Answers stay on the prompt's topic: sentences come from the domain the prompt is about (see
`corpus.domain_of`), and a field's name picks their kind: `strengths` praise, `weaknesses`
concerns, `tips` tips, `reason` why a plan was chosen, `text` an insight. A field named
`minutes` gets a practice length in steps of five.

Conventions tie answers to the prompt: when a message holds a line `ALLOWED_IDS: a,b,c`,
arrays named `interaction_ids` are filled from those ids (clamped to minItems/maxItems), and a
`oneOf`/`anyOf` branch whose `interaction_ids` can hold exactly that many ids is preferred.
A line `ALLOWED_<NAME>_IDS: a,b,c` (e.g. `ALLOWED_DRILL_IDS`, `ALLOWED_FOCUS_IDS`) fills
arrays named `<name>_ids` with a few of those ids and strings named `<name>_id` with one,
those of the prompt's domain first.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from providers.sim.corpus import domain_of, sentences, slug
from providers.sim.schema_check import resolve, schema_errors

__all__ = ["allowed_ids", "answer_for_schema", "broken_answer", "named_ids"]

_ALLOWED_IDS = re.compile(r"^\s*ALLOWED_IDS:[ \t]*(.*?)\s*$", re.MULTILINE)
_NAMED_IDS = re.compile(r"^\s*ALLOWED_([A-Z]+)_IDS:[ \t]*(.*?)\s*$", re.MULTILINE)
_KEYISH = re.compile(r"(^|_)(key|id|slug|code)s?$")  # `*_ids` arrays hold slugs too
_KIND_OF = {
    "strengths": "praise",
    "weaknesses": "concern",
    "tips": "tip",
    "reason": "reason",
    "text": "insight",
}
_MINUTES = range(5, 35, 5)  # a practice block: 5 to 30 minutes
_MAX_PICKED = 3  # ids picked for a `*_ids` array when its schema allows more
_MAX_DEPTH = 8
_ATTEMPTS = 8


def allowed_ids(text: str) -> list[str] | None:
    """The ids of the last `ALLOWED_IDS: a,b,c` line in `text`, or None when there is none."""
    found = _ALLOWED_IDS.findall(text)
    if not found:
        return None
    return [part.strip() for part in found[-1].split(",") if part.strip()]


def named_ids(text: str) -> dict[str, list[str]]:
    """`{"drill": [...]}` for each `ALLOWED_DRILL_IDS: a,b` line in `text` (the last one wins)."""
    return {
        name.lower(): [part.strip() for part in ids.split(",") if part.strip()]
        for name, ids in _NAMED_IDS.findall(text)
    }


def answer_for_schema(
    schema: dict[str, Any], *, rng: random.Random, context: str = "", topic: str = ""
) -> Any:
    """A value that fits `schema`; `context` is the prompt text (see the module docstring).

    `topic` (the last user message) names the domain first; the whole context is the fallback.
    """
    generator = _Generator(
        schema, rng, allowed_ids(context), named_ids(context), domain_of(topic, context)
    )
    value = generator.value(schema, "", 0)
    for _ in range(_ATTEMPTS):
        if not schema_errors(schema, value):
            break
        value = generator.value(schema, "", 0)
    return value


def broken_answer(
    schema: dict[str, Any], *, rng: random.Random, context: str = "", topic: str = ""
) -> Any:
    """Valid JSON that does not fit `schema`: a required field dropped, else a wrong type."""
    value = answer_for_schema(schema, rng=rng, context=context, topic=topic)
    top = resolve(schema, schema)
    if isinstance(value, dict):
        for key in top.get("required", []):
            broken = {k: v for k, v in value.items() if k != key}
            if schema_errors(schema, broken):
                return broken
    for candidate in ("not what you asked for", 42, ["unexpected"], None, True, {"unexpected": 1}):
        if schema_errors(schema, candidate):
            return candidate
    return value  # a schema that accepts anything cannot be broken


class _Generator:
    def __init__(
        self,
        root: dict[str, Any],
        rng: random.Random,
        ids: list[str] | None,
        named: dict[str, list[str]],
        domain: str,
    ) -> None:
        self.root = root
        self.rng = rng
        self.ids = ids
        self.named = named
        self.domain = domain

    def value(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        schema = resolve(schema, self.root)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            allowed = self._allowed_for(name)
            fitting = [v for v in schema["enum"] if allowed and v in allowed]
            return self.rng.choice(fitting or schema["enum"])
        if "allOf" in schema:
            return self.value(self._merge(schema), name, depth)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches:
            return self.value(self._pick_branch(branches, schema), name, depth)
        kind = self._pick_type(schema, depth, prefer_value=bool(self._allowed_for(name)))
        return self._make(kind, schema, name, depth)

    def _allowed_for(self, name: str) -> list[str] | None:
        """The ids an `ALLOWED_<NAME>_IDS` line gives a field named `<name>_ids` or `<name>_id`."""
        stem = name.removesuffix("_ids") if name.endswith("_ids") else name.removesuffix("_id")
        return self.named.get(stem) if stem != name else None

    def _make(self, kind: str, schema: dict[str, Any], name: str, depth: int) -> Any:
        match kind:
            case "object":
                return self._object(schema, depth)
            case "array":
                return self._array(schema, name, depth)
            case "integer" | "number" if name == "minutes" and (minutes := self._minutes(schema)):
                return minutes
            case "integer":
                return self._integer(schema)
            case "number":
                return self._number(schema)
            case "boolean":
                return self.rng.random() < 0.5
            case "null":
                return None
            case _:
                return self._string(schema, name)

    def _merge(self, schema: dict[str, Any]) -> dict[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = resolve(sub, self.root)
            properties = {**merged.get("properties", {}), **sub.get("properties", {})}
            required = [*merged.get("required", []), *sub.get("required", [])]
            merged = {**sub, **merged, "properties": properties, "required": required}
        return merged

    def _pick_branch(
        self, branches: list[dict[str, Any]], parent: dict[str, Any]
    ) -> dict[str, Any]:
        resolved = [
            {
                **{k: v for k, v in parent.items() if k not in ("oneOf", "anyOf")},
                **resolve(b, self.root),
            }
            for b in branches
        ]
        non_null = [b for b in resolved if b.get("type") != "null"] or resolved
        fitting = [b for b in non_null if self._fits_ids(b)] or non_null
        return self.rng.choice(fitting)

    def _fits_ids(self, schema: dict[str, Any]) -> bool:
        field = schema.get("properties", {}).get("interaction_ids")
        if self.ids is None or not isinstance(field, dict):
            return True
        field = resolve(field, self.root)
        low, high = field.get("minItems", 0), field.get("maxItems", len(self.ids))
        return bool(low <= len(self.ids) <= high)

    def _pick_type(self, schema: dict[str, Any], depth: int, *, prefer_value: bool) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            concrete = [k for k in kind if k != "null"]
            if not concrete or (depth >= _MAX_DEPTH and "null" in kind):
                return "null"
            wanted = [k for k in concrete if k in ("array", "string")] if prefer_value else []
            return str(self.rng.choice(wanted or concrete))
        if isinstance(kind, str):
            return kind
        if "properties" in schema:
            return "object"
        return "array" if "items" in schema else "string"

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        if depth >= _MAX_DEPTH:
            properties = {k: v for k, v in properties.items() if k in schema.get("required", [])}
        return {key: self.value(sub, key, depth + 1) for key, sub in properties.items()}

    def _array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        if name == "interaction_ids" and self.ids is not None:
            count = min(max(len(self.ids), low), high)
            pool = self.ids or [slug(self.rng, self.domain)]
            return [pool[i % len(pool)] for i in range(count)]
        allowed = self._allowed_for(name)
        if allowed is not None and (allowed or low == 0):
            return self._pick_ids(allowed, low, high)
        count = low if depth >= _MAX_DEPTH else self.rng.randint(min(max(low, 1), high), high)
        items = schema.get("items")
        item_schema: dict[str, Any] = items if isinstance(items, dict) else {"type": "string"}
        made: list[Any] = []
        for _ in range(count):
            made.append(self._fresh_item(item_schema, name, depth + 1, made))
        return made

    def _fresh_item(self, schema: dict[str, Any], name: str, depth: int, taken: list[Any]) -> Any:
        """An item not in `taken` when a few tries find one: three tips, not one tip three times."""
        item = self.value(schema, name, depth)
        for _ in range(_ATTEMPTS):
            if item not in taken:
                break
            item = self.value(schema, name, depth)
        return item

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if fmt == "date-time":
            return f"2024-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}T10:00:00Z"
        if fmt == "date":
            return f"2024-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}"
        if allowed := self._allowed_for(name):
            return self._pick_ids(allowed, 1, 1)[0]
        text = slug(self.rng, self.domain) if _KEYISH.search(name) else self._sentence(name)
        low = int(schema.get("minLength", 0))
        while len(text) < low:
            text = f"{text} {self.rng.choice(sentences(self.domain))}"
        high = schema.get("maxLength")
        if high is not None and len(text) > high:
            cut = text[:high]
            text = (
                cut.rsplit(" ", 1)[0] if " " in cut and len(cut.rsplit(" ", 1)[0]) >= low else cut
            )
        return text

    def _sentence(self, name: str) -> str:
        """A sentence of the prompt's domain; an insight (`text`) also says what to do next."""
        kind = _KIND_OF.get(name, "tip")
        text = self.rng.choice(sentences(self.domain, kind))
        if kind == "insight":
            text = f"{text} {self.rng.choice(sentences(self.domain))}"
        return text

    def _pick_ids(self, allowed: list[str], low: int, high: int) -> list[str]:
        """A few distinct ids from `allowed` (repeated only to reach `low`), the domain's first."""
        top = max(low, min(high, len(allowed), max(low, _MAX_PICKED)))
        count = self.rng.randint(min(max(low, 1), top), top) if allowed else 0
        mine = [i for i in allowed if domain_of(i) == self.domain != "general"]
        others = [i for i in allowed if i not in mine]
        self.rng.shuffle(mine)
        self.rng.shuffle(others)
        pool = mine + others
        return [pool[i % len(pool)] for i in range(count)]

    def _minutes(self, schema: dict[str, Any]) -> int | None:
        """A practice length in steps of five within the bounds, or None when none fits."""
        low, high = self._bounds(schema, integer=True)
        fitting = [m for m in _MINUTES if low <= m <= high]
        return self.rng.choice(fitting) if fitting else None

    def _integer(self, schema: dict[str, Any]) -> int:
        low, high = self._bounds(schema, integer=True)
        return self.rng.randint(int(low), int(high))

    def _number(self, schema: dict[str, Any]) -> float:
        low, high = self._bounds(schema, integer=False)
        value = round(self.rng.uniform(low, high), 2)
        return min(max(value, low), high)

    def _bounds(self, schema: dict[str, Any], *, integer: bool) -> tuple[float, float]:
        step = 1 if integer else 0.01
        low = schema.get("minimum")
        if low is None and "exclusiveMinimum" in schema:
            low = schema["exclusiveMinimum"] + step
        high = schema.get("maximum")
        if high is None and "exclusiveMaximum" in schema:
            high = schema["exclusiveMaximum"] - step
        if low is None:
            low = 1 if high is None else high - 9
        if high is None:
            high = low + 9
        if integer:
            low, high = -(-low // 1), high // 1  # ceil, floor: integers inside the bounds
        return float(low), float(max(low, high))
