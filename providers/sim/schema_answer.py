"""JSON answers generated to fit a JSON Schema (and, on request, answers that break it).

Generation is generic: objects get every property, arrays a few items, strings plausible English
from the corpus (key-like names such as `key` or `*_id` get a short slug), numbers a value within
their bounds. `anyOf`/`oneOf` pick one branch, `allOf` merges, local `$ref`s are followed.

One convention ties answers to the prompt: when a message holds a line `ALLOWED_IDS: a,b,c`,
arrays named `interaction_ids` are filled from those ids (clamped to minItems/maxItems), and a
`oneOf`/`anyOf` branch whose `interaction_ids` can hold exactly that many ids is preferred.
"""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

from providers.sim.corpus import SENTENCES, slug
from providers.sim.schema_check import resolve, schema_errors

__all__ = ["allowed_ids", "answer_for_schema", "broken_answer"]

_ALLOWED_IDS = re.compile(r"^\s*ALLOWED_IDS:[ \t]*(.*?)\s*$", re.MULTILINE)
_KEYISH = re.compile(r"(^|_)(key|id|slug|code)$")
_MAX_DEPTH = 8
_ATTEMPTS = 8


def allowed_ids(text: str) -> list[str] | None:
    """The ids of the last `ALLOWED_IDS: a,b,c` line in `text`, or None when there is none."""
    found = _ALLOWED_IDS.findall(text)
    if not found:
        return None
    return [part.strip() for part in found[-1].split(",") if part.strip()]


def answer_for_schema(schema: dict[str, Any], *, rng: random.Random, context: str = "") -> Any:
    """A value that fits `schema`; `context` is the prompt text (see the module docstring)."""
    generator = _Generator(schema, rng, allowed_ids(context))
    value = generator.value(schema, "", 0)
    for _ in range(_ATTEMPTS):
        if not schema_errors(schema, value):
            break
        value = generator.value(schema, "", 0)
    return value


def broken_answer(schema: dict[str, Any], *, rng: random.Random, context: str = "") -> Any:
    """Valid JSON that does not fit `schema`: a required field dropped, else a wrong type."""
    value = answer_for_schema(schema, rng=rng, context=context)
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
    def __init__(self, root: dict[str, Any], rng: random.Random, ids: list[str] | None) -> None:
        self.root = root
        self.rng = rng
        self.ids = ids

    def value(self, schema: dict[str, Any], name: str, depth: int) -> Any:
        schema = resolve(schema, self.root)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return self.rng.choice(schema["enum"])
        if "allOf" in schema:
            return self.value(self._merge(schema), name, depth)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches:
            return self.value(self._pick_branch(branches, schema), name, depth)
        kind = self._pick_type(schema, depth)
        return self._make(kind, schema, name, depth)

    def _make(self, kind: str, schema: dict[str, Any], name: str, depth: int) -> Any:
        match kind:
            case "object":
                return self._object(schema, depth)
            case "array":
                return self._array(schema, name, depth)
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

    def _pick_type(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            concrete = [k for k in kind if k != "null"]
            if not concrete or (depth >= _MAX_DEPTH and "null" in kind):
                return "null"
            return str(self.rng.choice(concrete))
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
            pool = self.ids or [slug(self.rng)]
            return [pool[i % len(pool)] for i in range(count)]
        count = low if depth >= _MAX_DEPTH else self.rng.randint(min(max(low, 1), high), high)
        items = schema.get("items")
        item_schema: dict[str, Any] = items if isinstance(items, dict) else {"type": "string"}
        return [self.value(item_schema, name, depth + 1) for _ in range(count)]

    def _string(self, schema: dict[str, Any], name: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if fmt == "date-time":
            return f"2024-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}T10:00:00Z"
        if fmt == "date":
            return f"2024-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}"
        text = slug(self.rng) if _KEYISH.search(name) else self.rng.choice(SENTENCES)
        low = int(schema.get("minLength", 0))
        while len(text) < low:
            text = f"{text} {self.rng.choice(SENTENCES)}"
        high = schema.get("maxLength")
        if high is not None and len(text) > high:
            cut = text[:high]
            text = (
                cut.rsplit(" ", 1)[0] if " " in cut and len(cut.rsplit(" ", 1)[0]) >= low else cut
            )
        return text

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
