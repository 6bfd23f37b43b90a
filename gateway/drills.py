"""The drill catalog and coaching notes: a TOML file shipped with the gateway, or the one the
`drills_file` setting names, read once at start-up.

Every `drill_ids` a coaching skill returns is a subset of the catalog's ids, and every drill's
focuses are among the gateway's focuses, so a broken file stops the gateway at start-up with one
line saying what to fix (`ConfigError`), not a request later.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from gateway.settings import ConfigError
from streams.prompts import FOCUS_IDS

__all__ = ["Drill", "DrillCatalog", "load_catalog", "shipped"]

MAX_MINUTES = 240
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_FIELDS = ("id", "title", "focus_ids", "minutes", "description")


@dataclass(frozen=True, slots=True)
class Drill:
    id: str
    title: str
    focus_ids: tuple[str, ...]
    minutes: int
    description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "focus_ids": list(self.focus_ids),
            "minutes": self.minutes,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class DrillCatalog:
    """The drills (in the file's order), and short coaching notes per focus."""

    drills: tuple[Drill, ...] = ()
    notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ids: frozenset[str] = field(init=False, compare=False)
    _by_id: Mapping[str, Drill] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {d.id: d for d in self.drills})
        object.__setattr__(self, "ids", frozenset(self._by_id))

    def get(self, drill_id: str) -> Drill | None:
        return self._by_id.get(drill_id)

    def for_focuses(self, focus_ids: Iterable[str]) -> list[Drill]:
        """The drills that train any of `focus_ids`; every drill when none is given."""
        wanted = set(focus_ids)
        if not wanted:
            return list(self.drills)
        return [d for d in self.drills if wanted.intersection(d.focus_ids)]

    def to_json(self, drills: Iterable[Drill] | None = None) -> dict[str, Any]:
        """`{"drills": [...]}` of `drills` (default: all of them)."""
        return {"drills": [d.to_json() for d in (self.drills if drills is None else drills)]}


def load_catalog(path: Path | None = None) -> DrillCatalog:
    """The catalog in `path` (None: the one shipped in `gateway/data/drills.toml`); a
    `ConfigError` of one line when the file is missing, not TOML, or not a valid catalog."""
    where = "the shipped drill catalog" if path is None else f"drill catalog {path} (drills_file)"
    try:
        raw = shipped().read_bytes() if path is None else path.read_bytes()
        table = tomllib.loads(raw.decode())
    except FileNotFoundError:
        raise ConfigError([f"{where} does not exist"]) from None
    except OSError as exc:
        reason = (exc.strerror or "error").lower()
        raise ConfigError([f"{where} cannot be read: {reason}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{where} is not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: TOML syntax error: {exc}"]) from None
    try:
        return _catalog(table)
    except ValueError as exc:
        raise ConfigError([f"{where}: {exc}"]) from None


def shipped() -> Traversable:
    """The catalog file shipped with the package."""
    return files("gateway") / "data" / "drills.toml"


def _catalog(table: dict[str, Any]) -> DrillCatalog:
    entries = table.get("drills")
    if not isinstance(entries, list) or not entries:
        raise ValueError("needs at least one [[drills]] table")
    drills = [_drill(index, entry) for index, entry in enumerate(entries)]
    seen: set[str] = set()
    for drill in drills:
        if drill.id in seen:
            raise ValueError(f'drill id "{drill.id}" appears twice')
        seen.add(drill.id)
    return DrillCatalog(tuple(drills), _notes(table.get("notes", {})))


def _drill(index: int, entry: Any) -> Drill:
    if not isinstance(entry, dict):
        raise ValueError(f"drills[{index}] must be a table")
    name = f'drill "{entry["id"]}"' if isinstance(entry.get("id"), str) else f"drills[{index}]"
    missing = [key for key in _FIELDS if key not in entry]
    if missing:
        raise ValueError(f"{name} is missing {', '.join(missing)}")
    if not isinstance(entry["id"], str) or not _SLUG.match(entry["id"]):
        raise ValueError(f"{name}: id must be a slug (lowercase letters, digits, hyphens)")
    for key in ("title", "description"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ValueError(f"{name}: {key} must be non-empty text")
    minutes = entry["minutes"]
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise ValueError(f"{name}: minutes must be a whole number 1-{MAX_MINUTES}")
    return Drill(
        entry["id"],
        entry["title"].strip(),
        _focus_ids(name, entry["focus_ids"]),
        minutes,
        entry["description"].strip(),
    )


def _focus_ids(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: focus_ids must be a non-empty list of focus ids")
    for focus_id in value:
        _known(name, focus_id)
    return tuple(dict.fromkeys(value))


def _notes(value: Any) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ValueError("[notes] must be a table of focus id = [text, ...]")
    notes: dict[str, tuple[str, ...]] = {}
    for focus_id, texts in value.items():
        _known("[notes]", focus_id)
        if not isinstance(texts, list) or not all(isinstance(t, str) and t for t in texts):
            raise ValueError(f"notes.{focus_id} must be a list of non-empty texts")
        notes[focus_id] = tuple(texts)
    return notes


def _known(name: str, focus_id: str) -> None:
    if focus_id not in FOCUS_IDS:
        known = ", ".join(sorted(FOCUS_IDS))
        raise ValueError(f'{name} names an unknown focus "{focus_id}" (known: {known})')
