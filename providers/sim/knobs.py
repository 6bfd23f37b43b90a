"""The sim's knobs: one frozen dataclass, validated updates, and the matching CLI flags."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KnobError", "SimKnobs", "add_knob_flags", "knobs_from_flags"]


class KnobError(ValueError):
    """A knob update with a bad name or value; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SimKnobs:
    """How the simulated upstream behaves. Rates are probabilities per request (0..1)."""

    ttft_ms: float = 20.0
    tokens_per_s: float = 200.0  # 0 = as fast as possible
    reply_tokens: int = 40
    fail_rate: float = 0.0
    fail_status: int = 500
    retry_after: float | None = None  # seconds, sent as Retry-After on failures
    hang_rate: float = 0.0
    drop_after: int = 0  # close the stream abruptly after N tokens; 0 = off
    drop_rate: float = 1.0  # share of requests dropped when drop_after is set
    malformed_rate: float = 0.0
    invalid_json_rate: float = 0.0
    seed: int = 0
    require_key: str | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-model overrides

    def updated(self, patch: Mapping[str, Any]) -> SimKnobs:
        """A copy with `patch` applied; raises `KnobError` listing every bad name or value."""
        problems = [f"unknown knob {name!r}" for name in patch if name not in _CHECKS]
        for name, value in patch.items():
            check = _CHECKS.get(name)
            if check is not None and (problem := check(value)) is not None:
                problems.append(f"{name}: {problem}")
        if problems:
            raise KnobError(problems)
        changes: dict[str, Any] = {
            k: float(v) if _FLOATS.get(k) and v is not None else v for k, v in patch.items()
        }
        return dataclasses.replace(self, **changes)

    def for_model(self, model: str) -> SimKnobs:
        """These knobs with the overrides for `model` applied."""
        override = self.models.get(model)
        return dataclasses.replace(self, **override) if override else self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _non_negative(value: object) -> str | None:
    return None if _is_number(value) and value >= 0 else "must be a number >= 0"  # type: ignore[operator]


def _rate(value: object) -> str | None:
    return None if _is_number(value) and 0 <= value <= 1 else "must be a number in 0..1"  # type: ignore[operator]


def _count(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return None if ok else "must be an integer >= 0"


def _status(value: object) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599
    return None if ok else "must be an HTTP error status (400..599)"


def _optional_seconds(value: object) -> str | None:
    return None if value is None else _non_negative(value)


def _seed(value: object) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"


def _key(value: object) -> str | None:
    ok = value is None or (isinstance(value, str) and value != "")
    return None if ok else "must be a non-empty string or null"


def _models(value: object) -> str | None:
    if not isinstance(value, dict):
        return "must be an object of model name -> knobs"
    for model, override in value.items():
        if not isinstance(override, dict) or "models" in override:
            return f"override for {model!r} must be an object of knobs"
        try:
            SimKnobs().updated(override)
        except KnobError as exc:
            return f"override for {model!r}: {exc}"
    return None


_CHECKS = {
    "ttft_ms": _non_negative,
    "tokens_per_s": _non_negative,
    "reply_tokens": _count,
    "fail_rate": _rate,
    "fail_status": _status,
    "retry_after": _optional_seconds,
    "hang_rate": _rate,
    "drop_after": _count,
    "drop_rate": _rate,
    "malformed_rate": _rate,
    "invalid_json_rate": _rate,
    "seed": _seed,
    "require_key": _key,
    "models": _models,
}
_FLOATS = {f.name: f.type in ("float", "float | None") for f in dataclasses.fields(SimKnobs)}

# flag name -> (knob name, type)
_FLAGS: dict[str, tuple[str, type]] = {
    "--ttft-ms": ("ttft_ms", float),
    "--tokens-per-s": ("tokens_per_s", float),
    "--reply-tokens": ("reply_tokens", int),
    "--fail-rate": ("fail_rate", float),
    "--fail-status": ("fail_status", int),
    "--retry-after": ("retry_after", float),
    "--hang-rate": ("hang_rate", float),
    "--drop-after": ("drop_after", int),
    "--drop-rate": ("drop_rate", float),
    "--malformed-rate": ("malformed_rate", float),
    "--invalid-json-rate": ("invalid_json_rate", float),
    "--seed": ("seed", int),
    "--require-key": ("require_key", str),
}


# flag name -> (metavar, what it does); the help adds the knob's default.
_HELP: dict[str, tuple[str, str]] = {
    "--ttft-ms": ("MS", "delay before the first token, in milliseconds"),
    "--tokens-per-s": ("N", "tokens per second while streaming, 0 for no pacing"),
    "--reply-tokens": ("N", "length of a reply in tokens"),
    "--fail-rate": ("RATE", "share of requests (0..1) answered with --fail-status"),
    "--fail-status": ("STATUS", "the HTTP status of a failed request (400..599)"),
    "--retry-after": ("SECONDS", "Retry-After sent with failures (default none)"),
    "--hang-rate": ("RATE", "share of requests (0..1) that never answer"),
    "--drop-after": ("N", "close the stream abruptly after N tokens, 0 for never"),
    "--drop-rate": ("RATE", "share of requests (0..1) dropped when --drop-after is set"),
    "--malformed-rate": ("RATE", "share of requests (0..1) answered with a broken body or event"),
    "--invalid-json-rate": (
        "RATE",
        "share of structured-output requests (0..1) answered with JSON that misses the schema",
    ),
    "--seed": ("N", "seed of the replies' words: the same seed and prompt give the same reply"),
    "--require-key": ("KEY", "the only API key accepted (default: any non-empty key)"),
}


def add_knob_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per knob (defaults left unset, so only given flags change knobs)."""
    defaults = SimKnobs()
    for flag, (dest, kind) in _FLAGS.items():
        metavar, text = _HELP[flag]
        default = getattr(defaults, dest)
        if default is not None:
            text += f" (default {default:g})" if kind is float else f" (default {default})"
        parser.add_argument(flag, dest=dest, type=kind, default=None, metavar=metavar, help=text)


def knobs_from_flags(args: argparse.Namespace, base: SimKnobs | None = None) -> SimKnobs:
    """Knobs from parsed flags; raises `KnobError` on a bad value."""
    patch = {dest: getattr(args, dest) for dest, _ in _FLAGS.values()}
    return (base or SimKnobs()).updated({k: v for k, v in patch.items() if v is not None})
