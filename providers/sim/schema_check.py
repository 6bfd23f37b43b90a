"""A small JSON Schema checker: the subset the sim generates for, used to test its answers.

Covers type (and type lists), enum, const, properties/required/additionalProperties=false,
items/minItems/maxItems, minLength/maxLength, minimum/maximum (and exclusive ones), anyOf,
oneOf, allOf and local `$ref`s (`#/$defs/...`, `#/definitions/...`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve", "schema_errors"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (repeatedly) to the schema it names."""
    seen = 0
    while "$ref" in schema and seen < 32:
        node: Any = root
        for part in str(schema["$ref"]).removeprefix("#/").split("/"):
            if part:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
        seen += 1
    return schema


def _is_type(value: object, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def schema_errors(
    schema: dict[str, Any], value: object, root: dict[str, Any] | None = None, path: str = "$"
) -> list[str]:
    """Every way `value` breaks `schema`, as readable lines; empty when it fits."""
    root = schema if root is None else root
    schema = resolve(schema, root)
    errors: list[str] = []
    for check in (
        _check_type,
        _check_values,
        _check_combinators,
        _check_object,
        _check_array,
        _check_string,
        _check_number,
    ):
        errors.extend(check(schema, value, root, path))
    return errors


def _check_type(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    types = schema.get("type")
    if types is None:
        return []
    names = types if isinstance(types, list) else [types]
    if any(_is_type(value, name) for name in names):
        return []
    return [f"{path}: expected {'/'.join(names)}, got {type(value).__name__}"]


def _check_values(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected const {schema['const']!r}")
    return errors


def _check_combinators(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    errors = []
    for sub in schema.get("allOf", []):
        errors.extend(schema_errors(sub, value, root, path))
    if "anyOf" in schema:
        fits = sum(not schema_errors(sub, value, root, path) for sub in schema["anyOf"])
        if fits == 0:
            errors.append(f"{path}: fits none of anyOf")
    if "oneOf" in schema:
        fits = sum(not schema_errors(sub, value, root, path) for sub in schema["oneOf"])
        if fits != 1:
            errors.append(f"{path}: fits {fits} of oneOf, expected exactly 1")
    return errors


def _check_object(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    if not isinstance(value, dict):
        return []
    errors = [f"{path}: missing {key!r}" for key in schema.get("required", []) if key not in value]
    properties: dict[str, Any] = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            errors.extend(schema_errors(properties[key], item, root, f"{path}.{key}"))
        elif schema.get("additionalProperties") is False:
            errors.append(f"{path}: unexpected {key!r}")
    return errors


def _check_array(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    if not isinstance(value, list):
        return []
    errors = []
    if len(value) < schema.get("minItems", 0):
        errors.append(f"{path}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            errors.extend(schema_errors(items, item, root, f"{path}[{index}]"))
    return errors


def _check_string(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    if not isinstance(value, str):
        return []
    errors = []
    if len(value) < schema.get("minLength", 0):
        errors.append(f"{path}: shorter than {schema['minLength']}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']}")
    return errors


def _check_number(
    schema: dict[str, Any], value: object, root: dict[str, Any], path: str
) -> list[str]:
    if not _is_type(value, "number"):
        return []
    number: float = value  # type: ignore[assignment]
    errors = []
    if "minimum" in schema and number < schema["minimum"]:
        errors.append(f"{path}: below minimum {schema['minimum']}")
    if "maximum" in schema and number > schema["maximum"]:
        errors.append(f"{path}: above maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and number <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: not above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and number >= schema["exclusiveMaximum"]:
        errors.append(f"{path}: not below {schema['exclusiveMaximum']}")
    return errors
