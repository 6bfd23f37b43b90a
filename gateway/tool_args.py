"""Checking a tool call's arguments against the tool's JSON schema, in the gateway's words.

The model writes the arguments; they are checked before a tool runs, and what is wrong is told
back to the model (`focus_ids[3]: must be one of ...`) so it can correct itself. Only the
part of JSON Schema the gateway's own tools use is understood: `type` (object, array, string,
integer, number, boolean), `properties`, `required`, `additionalProperties: false`, `enum`,
`minLength`/`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`, `uniqueItems`, `items`.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["ArgumentError", "check_arguments", "parse_arguments"]

_SHOWN = 40  # characters of a value quoted back


class ArgumentError(ValueError):
    """The arguments are not valid JSON, or do not fit the schema; the message says where."""


def parse_arguments(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The arguments JSON `text` as an object that fits `schema` (an empty text is `{}`)."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        raise ArgumentError("arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise ArgumentError("arguments must be a JSON object")
    problems = check_arguments(value, schema)
    if problems:
        raise ArgumentError("; ".join(problems[:5]))
    return value


def check_arguments(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What is wrong with `value` against `schema`, one line each (none: it fits)."""
    problem = _type_problem(value, schema.get("type"))
    if problem:
        return [f"{where or 'arguments'}: {problem}"]
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(str(v) for v in schema["enum"])
        return [f"{where or 'value'}: must be one of {choices}, not {_show(value)}"]
    if isinstance(value, dict):
        return _object_problems(value, schema, where)
    if isinstance(value, list):
        return _array_problems(value, schema, where)
    return [f"{where or 'value'}: {p}" for p in _scalar_problems(value, schema)]


def _type_problem(value: Any, kind: str | None) -> str | None:
    expected: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "integer": int,
        "number": (int, float),
    }
    if kind is None:
        return None
    fits = isinstance(value, expected[kind])
    if kind in ("integer", "number") and isinstance(value, bool):
        fits = False
    return None if fits else f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _object_problems(value: dict[str, Any], schema: dict[str, Any], where: str) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    prefix = f"{where}." if where else ""
    required = schema.get("required", ())
    problems = [f"{prefix}{name}: is required" for name in required if name not in value]
    if schema.get("additionalProperties") is False:
        problems += [
            f"{prefix}{name}: is not an argument of this tool"
            for name in value
            if name not in properties
        ]
    for name, item in value.items():
        if name in properties:
            problems += check_arguments(item, properties[name], f"{prefix}{name}")
    return problems


def _array_problems(value: list[Any], schema: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low is not None and len(value) < low:
        problems.append(f"{where}: needs at least {low} items")
    if high is not None and len(value) > high:
        problems.append(f"{where}: takes at most {high} items")
    if schema.get("uniqueItems") and len({orjson.dumps(v) for v in value}) != len(value):
        problems.append(f"{where}: items must not repeat")
    if "items" in schema:
        for index, item in enumerate(value):
            problems += check_arguments(item, schema["items"], f"{where}[{index}]")
    return problems


def _scalar_problems(value: Any, schema: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"must be at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            problems.append(f"must be at most {schema['maxLength']} characters")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"must be at most {schema['maximum']}")
    return problems


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
