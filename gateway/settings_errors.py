"""Configuration mistakes in the gateway's words: one line per problem of a failed `Settings()`.

Each line names the key as the user wrote it (a `COACH_` variable, or a dotted key of the config
file) and, for an unknown key, the nearest known one; pydantic's wording and links stay out.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from gateway.settings import CONFIG_ENV, ROUTES, ConfigError, Settings, read_config_file

__all__ = ["explain"]

SEE_README = "see the settings table in README.md, section Configuration"
ENV_PREFIX = "COACH_"
# Values of keys with these in their names are never echoed (a secret may be the wrong value).
_SENSITIVE = ("secret", "key", "password", "token", "url", "dsn")
_PROBLEMS = {
    "missing": "is required",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "path_type": "must be a path",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "greater than"),
    "less_than": ("lt", "less than"),
    "too_long": ("max_length", "at most this many items:"),
    "too_short": ("min_length", "at least this many items:"),
}


def explain(exc: ValidationError) -> list[str]:
    """One line per problem in `exc`, raised by building `Settings` from this environment."""
    origin = _Origin.current()
    return [_line(error, origin) for error in exc.errors(include_url=False)]


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where the values came from: the environment's names and the config file's tables."""

    env: frozenset[str]
    file: str | None
    toml: dict[str, Any]

    @classmethod
    def current(cls) -> _Origin:
        path = os.environ.get(CONFIG_ENV) or None
        toml: dict[str, Any] = {}
        if path:
            # It was read a moment ago; gone since, the lines just name no file.
            with contextlib.suppress(ConfigError):
                toml = read_config_file(Path(path))
        return cls(frozenset(name.upper() for name in os.environ), path, toml)

    def from_env(self, parts: Sequence[str]) -> bool:
        return env_name(parts) in self.env

    def where(self, parts: Sequence[str]) -> str:
        """` (in gateway.toml)`, ` (in COACH_QUOTAS)` (a JSON value), or nothing (arguments)."""
        if self.file and _in_table(self.toml, parts):
            return f" (in {self.file})"
        for end in range(len(parts) - 1, 0, -1):
            if self.from_env(parts[:end]):
                return f" (in {env_name(parts[:end])})"
        if self.file and _in_table(self.toml, parts[:1]):
            return f" (in {self.file})"
        return ""


def _line(error: ErrorDetails, origin: _Origin) -> str:
    loc = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        return _unknown(loc, origin)
    if error["type"] == "unknown_route":
        return _unknown([*loc, str(error.get("ctx", {}).get("route"))], origin)
    if error["type"] == "missing" and isinstance(error["loc"][-1], int):
        loc, problem = loc[:-1], "has too few items"  # a tuple's missing item
    else:
        problem = _problem(error) + _got(error, loc)
    if origin.from_env(_keys(loc)):
        return f"setting `{env_name(_keys(loc))}` {problem}"
    return f"setting `{_dotted(error['loc'][: len(loc)])}`{origin.where(loc)} {problem}"


def _unknown(loc: list[str], origin: _Origin) -> str:
    if origin.from_env(loc):  # a variable: its name split at `__` is the path
        parts = env_name(loc).removeprefix(ENV_PREFIX).lower().split("__")
        hint = _suggest(parts)
        head = f"unknown setting `{env_name(parts)}`"
        return f"{head}; did you mean `{env_name(hint)}`?" if hint else f"{head}; {SEE_README}"
    hint = _suggest(loc)
    head = f"unknown setting `{'.'.join(loc)}`{origin.where(loc)}"
    return f"{head}; did you mean `{'.'.join(hint)}`?" if hint else f"{head}; {SEE_README}"


def _suggest(parts: Sequence[str]) -> list[str] | None:
    """`parts` with its first unknown key replaced by the nearest known one; None when no
    known key is near."""
    for index, part in enumerate(parts):
        known = _known_keys(parts[:index])
        if known is None or part in known:
            continue
        close = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
        return [*parts[:index], close[0], *parts[index + 1 :]] if close else None
    return None


def _known_keys(path: Sequence[str]) -> list[str] | None:
    """The keys a table at `path` takes; None where any key goes (provider names, say)."""
    if list(path) == ["routes"]:
        return list(ROUTES)
    node: Any = Settings
    for part in path:
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(part)
            if field is None:
                return None
            node = field.annotation
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        else:
            return None
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return None


def _problem(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    if kind == "value_error":
        return str(ctx["error"])
    if kind in _BOUNDS:
        name, words = _BOUNDS[kind]
        return f"must be {words} {ctx[name]}"
    if kind in _PROBLEMS:
        return _PROBLEMS[kind]
    message = error["msg"]
    return f"is not valid ({message[:1].lower()}{message[1:]})"


def _got(error: ErrorDetails, loc: Sequence[str]) -> str:
    value = error.get("input")
    if any(word in part.lower() for part in loc for word in _SENSITIVE):
        return ""
    if isinstance(value, str | int | float) and len(repr(value)) <= 60:
        return f", got {value!r}"
    return ""


def env_name(parts: Sequence[str]) -> str:
    return ENV_PREFIX + "__".join(_keys(parts)).upper()


def _keys(parts: Sequence[str]) -> list[str]:
    return [part for part in parts if not part.isdigit()]


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _in_table(table: dict[str, Any], parts: Sequence[str]) -> bool:
    node: Any = table
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
