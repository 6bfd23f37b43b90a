"""Server-sent events decoding, incremental and pure: bytes in as they arrive, events out.

Follows the WHATWG event-stream rules that model vendors use: lines end in LF, CRLF or CR; an
empty line ends an event; `data:` lines join with LF; `event:` names the event (default
"message"); lines starting with `:` are comments (keep-alives). `id:` and `retry:` are not
needed by the chat adapters and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from providers.errors import MalformedResponse

__all__ = ["DEFAULT_MAX_EVENT_BYTES", "SseDecoder", "SseEvent"]

# An event bigger than this (no blank line in sight) is a broken upstream, not a reply to buffer.
DEFAULT_MAX_EVENT_BYTES = 1 << 20
# Single bytes are looked for as ints: `b"\r" in buf` first tries the needle as an int and formats
# a TypeError for it (CPython 3.11), many times the cost of `13 in buf`, per chunk.
_CR, _LF = ord("\r"), ord("\n")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: bytes


class SseDecoder:
    """Feed it the body as it arrives; each `feed` returns the events it completed."""

    __slots__ = ("_max_event_bytes", "_pending")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._pending = b""
        self._max_event_bytes = max_event_bytes

    def feed(self, data: bytes) -> list[SseEvent]:
        buf = self._pending + data if self._pending else data
        if _CR in buf:
            buf = _normalize_line_ends(buf)
        *blocks, self._pending = buf.split(b"\n\n")
        if len(self._pending) > self._max_event_bytes:
            raise MalformedResponse(f"an event of over {self._max_event_bytes} bytes")
        events = []
        for block in blocks:
            event = _parse_block(block)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[SseEvent]:
        """The event left unterminated when the body ended (servers may omit the last blank
        line)."""
        block, self._pending = self._pending, b""
        event = _parse_block(block.rstrip(b"\n"))
        return [] if event is None else [event]


def _normalize_line_ends(buf: bytes) -> bytes:
    # A CR at the very end may be the first half of a CRLF split across reads: keep it as is.
    if buf.endswith(b"\r"):
        return buf[:-1].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\r"
    return buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _parse_block(block: bytes) -> SseEvent | None:
    if block.startswith(b"data: ") and _LF not in block:  # the common one-line event
        return SseEvent("message", block[6:])
    name = "message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if not data:
        return None  # comments only, or an event with no data: nothing to dispatch
    return SseEvent(name, b"\n".join(data))
