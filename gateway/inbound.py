"""Inbound bounds of one WebSocket: frames and bytes per second (DESIGN.md, "Resilience and
quotas").

A client that sends faster than the bounds is closed (1008) rather than read: each frame it
sends costs the event loop that every other connection of the process shares. The check runs
for every frame, before the frame is parsed, so it is two token buckets in plain arithmetic.

The app reads the text and binary messages; the frames it never sees (protocol pings and pongs,
continuation frames of a fragmented message) are counted by the gateway's uvicorn protocol,
which offers the app two hooks (`INBOUND` in the scope's `extensions`), as it offers
`send_now`: `watch(count)` to have `count()` called for each such frame, and `refuse()` to stop
taking what the client sends once it is over a bound (the close then follows).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "INBOUND",
    "Exceeded",
    "FrameCounter",
    "InboundBounds",
    "InboundHooks",
    "inbound_hooks_of",
    "offer_inbound_hooks",
]

INBOUND = "coach.inbound"

FrameCounter = Callable[[], None]
"""Called once for each frame the app does not receive as a message."""


class InboundHooks(NamedTuple):
    """What the server's protocol offers the app for its inbound bounds."""

    watch: Callable[[FrameCounter | None], None]
    """Hook a counter of unseen frames (None: unhook it)."""
    refuse: Callable[[], None]
    """Take nothing more from the client (neither parse nor answer it); the app closes."""


BURST = 2.0  # how many seconds' worth a client may send at once


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, slots=True)
class Exceeded:
    """The bound a client passed: `unit` ("frames" or "bytes") per second."""

    unit: str
    per_s: float

    @property
    def message(self) -> str:
        """For the client's `error` event."""
        return (
            f"this connection sent more than {_number(self.per_s)} {self.unit} per second; "
            "it is closed"
        )

    @property
    def reason(self) -> str:
        """For the close frame (a reason has at most 123 bytes)."""
        return f"over {_number(self.per_s)} inbound {self.unit} per second"


class InboundBounds:
    """Two token buckets, frames and bytes, that refill at their rate per second and hold
    `BURST` seconds' worth; they start full. A frame takes one frame and its size; a bucket
    that goes below zero names the bound passed (the connection closes then, so the debt is
    never repaid)."""

    __slots__ = ("_byte_rate", "_bytes", "_frame_rate", "_frames", "_stamp")

    def __init__(self, frames_per_s: float, bytes_per_s: float, now: float) -> None:
        self._frame_rate = float(frames_per_s)
        self._byte_rate = float(bytes_per_s)
        self._frames = self._frame_rate * BURST
        self._bytes = self._byte_rate * BURST
        self._stamp = now

    def charge(self, nbytes: int, now: float) -> Exceeded | None:
        """Take one frame of `nbytes` at time `now` (seconds, monotonic); the bound it passed,
        if any."""
        elapsed = now - self._stamp
        self._stamp = now
        rate = self._frame_rate
        self._frames = min(rate * BURST, self._frames + elapsed * rate) - 1.0
        rate = self._byte_rate
        self._bytes = min(rate * BURST, self._bytes + elapsed * rate) - nbytes
        if self._frames < 0.0:
            return Exceeded("frames", self._frame_rate)
        if self._bytes < 0.0:
            return Exceeded("bytes", self._byte_rate)
        return None


def offer_inbound_hooks(extensions: dict[Any, Any], hooks: InboundHooks) -> None:
    """Put the hooks in a scope's `extensions` (by the server's protocol, before the app
    runs)."""
    extensions[INBOUND] = {"hooks": hooks}


def inbound_hooks_of(scope: Mapping[str, Any]) -> InboundHooks | None:
    """The connection's inbound hooks, when its server offers them."""
    extension = (scope.get("extensions") or {}).get(INBOUND)
    return extension["hooks"] if extension else None
