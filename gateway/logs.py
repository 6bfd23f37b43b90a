"""Logging: one JSON line per record (orjson), with the request id and hashed user/session ids.

What a line may hold: `ts`, `level`, `logger`, `msg`, `request_id` (from `request_id_var`, set by
the request middleware), and the record's `extra` fields. What it never holds: message text,
audio or tokens. `RedactionFilter` drops known content keys from `extra`, hashes `user_id` and
`session_id`, and scrubs `access_token=...` (and bearer tokens) from every string, uvicorn's
messages included.

`LogSampler` folds repeated events of one key (a client retrying past its quota) into one line
per interval with a count, so one client cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TextIO, TypeVar

import orjson

from gateway.ids import hash_id

__all__ = [
    "CONTENT_KEYS",
    "JsonFormatter",
    "LogSampler",
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


K = TypeVar("K", bound=Hashable)
P = TypeVar("P")


@dataclass(slots=True)
class _Folded(Generic[P]):
    since: float  # when the key's current interval began
    payload: P  # the latest folded event's
    count: int = 0  # events folded since


class LogSampler(Generic[K, P]):
    """Folds repeated events of one key into one log line per interval, with a count.

    `admit(key, payload)` says whether to log the event now: the first event of a key always is.
    The key's next events are folded until `interval_s` has passed; then `emit(payload, count,
    seconds)` writes one line for them (with the latest payload) and a new interval begins. An
    interval that ends with nothing folded forgets the key, so its next event is logged at once
    again: a client retrying steadily costs one line per interval, and a burst's tail is written
    when its interval ends, not lost. Intervals end on a loop timer (a callback, no task), or on
    the next `admit` or `flush_due` without a running loop; `close` writes what is left.

    Memory: at most `max_keys` keys. To make room the oldest is written early and dropped, so a
    client changing identity costs lines, never memory. `interval_s <= 0` turns folding off.
    """

    def __init__(
        self,
        interval_s: float,
        emit: Callable[[P, int, float], None],
        *,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._emit = emit
        self._max_keys = max(1, max_keys)
        self._clock = clock
        self._keys: OrderedDict[K, _Folded[P]] = OrderedDict()  # oldest interval first
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._keys)

    def admit(self, key: K, payload: P) -> bool:
        """True: log this event now. False: it is folded into the key's next line."""
        if self.interval_s <= 0:
            return True
        self.flush_due()
        folded = self._keys.get(key)
        if folded is not None:
            folded.count += 1
            folded.payload = payload
            return False
        if len(self._keys) >= self._max_keys:
            self._write(self._keys.popitem(last=False)[1], self._clock())
        self._keys[key] = _Folded(self._clock(), payload)
        self._arm()
        return True

    def flush_due(self) -> None:
        """Write the line of every interval that has ended; forget keys that folded nothing."""
        now = self._clock()
        while self._keys:
            key, folded = next(iter(self._keys.items()))
            if now - folded.since < self.interval_s:
                return
            del self._keys[key]
            if folded.count:
                self._write(folded, now)
                self._keys[key] = _Folded(now, folded.payload)  # still busy: keep folding

    def close(self) -> None:
        """Write every pending count now (at shutdown) and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        for folded in self._keys.values():
            self._write(folded, now)
        self._keys.clear()

    def _write(self, folded: _Folded[P], now: float) -> None:
        if folded.count:
            self._emit(folded.payload, folded.count, now - folded.since)

    def _arm(self) -> None:
        """Have the loop end the oldest interval on time (`flush_due` then re-arms)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: intervals end on the next `admit` or `flush_due`
        if self._timer is not None and self._timer_loop is loop:
            return
        first = next(iter(self._keys.values()))
        delay = max(first.since + self.interval_s - self._clock(), 0.0)
        # An empty context: the line must not carry the request id of whoever armed the timer.
        self._timer = loop.call_later(delay, self._on_timer, context=contextvars.Context())
        self._timer_loop = loop

    def _on_timer(self) -> None:
        self._timer = None
        self.flush_due()
        if self._keys:
            self._arm()
