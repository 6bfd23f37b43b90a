"""The JSON-schema vocabulary the OpenAPI document is written in (`gateway.openapi`)."""

from __future__ import annotations

from typing import Any

__all__ = ["BOOL", "INT", "NUM", "OBJ", "STR", "Json", "array", "nullable", "obj", "ref"]

Json = dict[str, Any]

STR: Json = {"type": "string"}
INT: Json = {"type": "integer"}
NUM: Json = {"type": "number"}
BOOL: Json = {"type": "boolean"}
OBJ: Json = {"type": "object"}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str) -> Json:
    return {"type": [kind, "null"]}


def obj(required: Json, optional: Json | None = None) -> Json:
    """An object with the `required` properties, and the `optional` ones."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def array(items: Json) -> Json:
    return {"type": "array", "items": items}
