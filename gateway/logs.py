"""Logging: one JSON line per record (orjson), with the request id and hashed user/session ids.

What a line may hold: `ts`, `level`, `logger`, `msg`, `request_id` (from `request_id_var`, set by
the request middleware), and the record's `extra` fields. What it never holds: message text,
audio or tokens. `RedactionFilter` drops known content keys from `extra`, hashes `user_id` and
`session_id`, and scrubs `access_token=...` (and bearer tokens) from every string, uvicorn's
messages included.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from gateway.ids import hash_id

__all__ = [
    "CONTENT_KEYS",
    "JsonFormatter",
    "RedactionFilter",
    "configure_logging",
    "redact_text",
    "request_id_var",
]

request_id_var: ContextVar[str | None] = ContextVar("coach_request_id", default=None)

# Keys whose values are user content or credentials: dropped from every line.
CONTENT_KEYS = frozenset(
    {
        "text",
        "message_text",
        "content",
        "contents",
        "messages",
        "prompt",
        "reply",
        "reply_text",
        "user_text",
        "partial_text",
        "delta",
        "audio",
        "token",
        "tokens",
        "jwt",
        "authorization",
        "access_token",
        "api_key",
        "password",
        "secret",
        "cookie",
    }
)
_HASHED_KEYS = frozenset({"user_id", "session_id"})
# Attributes every LogRecord has: not `extra`.
_RECORD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_SECRETS = re.compile(
    r"(?P<key>access_token=|bearer[ .]|api_key=|token=)(?P<value>[^\s&\"',;]+)", re.IGNORECASE
)


def redact_text(text: str) -> str:
    """`text` with token-like values (`access_token=...`, `Bearer ...`) replaced."""
    if "=" not in text and "earer" not in text:
        return text
    return _SECRETS.sub(lambda m: m.group("key") + "[redacted]", text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items() if str(k).lower() not in CONTENT_KEYS}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return redact_text(str(value))


class RedactionFilter(logging.Filter):
    """Rewrites each record in place: message scrubbed, content keys gone, ids hashed."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key in [k for k in vars(record) if k not in _RECORD_ATTRS]:
            lowered = key.lower()
            value = getattr(record, key)
            if lowered in CONTENT_KEYS:
                delattr(record, key)
            elif lowered in _HASHED_KEYS and isinstance(value, str) and value:
                setattr(record, key, hash_id(value))
            else:
                setattr(record, key, _clean(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extras after the fixed fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = redact_text(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


class _OursHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure_logging` installed, so calling it again replaces it."""


def configure_logging(level: str, stream: TextIO | None = None) -> logging.Handler:
    """Make every log record of the process one redacted JSON line on `stream` (stderr)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OursHandler)]:
        root.removeHandler(old)
    handler = _OursHandler(stream or sys.stderr)
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's loggers keep their own handlers unless told not to: route them through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
    return handler
