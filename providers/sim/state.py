"""The sim's mutable state (knobs, stats, the fate generator) and helpers both vendors share."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from providers.sim.knobs import SimKnobs
from providers.sim.reply import Fate, Plan, SimRequest, plan_reply
from providers.sim.stats import SimStats

RECEIVED_MAX = 64

__all__ = [
    "DropFilter",
    "SimState",
    "SimulatedDrop",
    "error_headers",
    "guarded",
    "hang_forever",
    "json_response",
    "wait_for_disconnect",
]


class SimulatedDrop(Exception):
    """Raised inside a response body so uvicorn closes the connection without finishing it."""


class DropFilter(logging.Filter):
    """Keeps uvicorn from logging a simulated drop as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDrop)


class SimState:
    """Knobs, counters and the generator that decides each request's fate."""

    def __init__(self, knobs: SimKnobs) -> None:
        self.knobs = knobs
        self.stats = SimStats()
        self.fate_rng = random.Random(knobs.seed)
        # What the latest requests asked (model, streamed or not, tools offered, every message's
        # text): for tests of what a gateway sends upstream. Bounded: the oldest is forgotten first.
        self.received: deque[dict[str, Any]] = deque(maxlen=RECEIVED_MAX)

    def update(self, patch: Mapping[str, Any]) -> SimKnobs:
        """Apply a partial knob update (raises `KnobError`); a new seed restarts the fates."""
        self.knobs = self.knobs.updated(patch)
        if "seed" in patch:
            self.fate_rng = random.Random(self.knobs.seed)
        return self.knobs

    def plan(self, request: SimRequest) -> Plan:
        self.received.append(
            {
                "model": request.model,
                "stream": request.stream,
                "prompt": request.prompt,
                "tools": [tool.name for tool in request.tools],
                "tool_choice": request.tool_choice,
                "tool_result": request.tool_result,
            }
        )
        return plan_reply(request, self.knobs, self.fate_rng)

    def authorized(self, request: Request) -> bool:
        """Any non-empty key passes, unless the `require_key` knob names the only one."""
        key = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization", "")
        if not key and auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
        required = self.knobs.require_key
        return bool(key) and (required is None or key == required)


async def wait_for_disconnect(receive: Receive) -> None:
    """Hold until the client goes away (the request body must already be read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def guarded(state: SimState, plan: Plan, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Count a streamed body's outcome: sent, hung, dropped, malformed or cancelled."""
    outcome = "cancelled"
    try:
        async for chunk in body:
            yield chunk
        outcome = "malformed" if plan.malformed else plan.outcome
    except SimulatedDrop:
        outcome = "dropped"
        raise
    finally:
        if plan.fate is Fate.HANG:
            outcome = "hung"
        state.stats.ended(outcome)


async def hang_forever() -> None:
    """Never return; the disconnect listener of the streaming response cancels this."""
    await asyncio.Event().wait()


def error_headers(knobs: SimKnobs) -> dict[str, str]:
    if knobs.retry_after is None:
        return {}
    value = float(knobs.retry_after)  # per-model overrides arrive as JSON ints or floats
    return {"retry-after": str(int(value)) if value.is_integer() else str(value)}


def json_response(
    content: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")
