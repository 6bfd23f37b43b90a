"""The agent around a session turn (`streams.agent.TurnAgent` on the gateway): guardrails and
the user's memories on every turn, server tools on sessions with `tools: true`.

Memories cost a database read, so a turn reads them only for a user known to have some: that is
remembered per user for `PRESENCE_TTL_S` (bounded, least recently used forgotten first), and
forgotten at once when a memory is added or deleted in this process (`memories_changed`).
Another replica's change is seen within the TTL.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from db.memories import list_memories
from db.pool import DATABASE_ERRORS
from gateway.agent_context import memory_message
from gateway.agent_tools import ToolContext, ToolOutcome, run_tool
from gateway.guardrails import mask_pii, safety_answer, safety_concern
from gateway.runtime import Gateway
from gateway.tool_specs import TOOL_SPECS
from providers.chat import Message, ToolCall, ToolSpec
from streams.agent import Screened
from streams.session import LiveSession

__all__ = ["PRESENCE_TTL_S", "GatewayAgent"]

log = logging.getLogger("coach.agent")

PRESENCE_TTL_S = 30.0
_PRESENCE_MAX = 10_000  # users remembered; past it the least recently used are forgotten


class GatewayAgent:
    """Guardrails, memories and tools for the turn engine (`TurnEngine.agent`)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._settings = gateway.settings.agent
        # user id -> (monotonic time read, has memories)
        self._presence: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def screen(self, text: str) -> Screened:
        concern = safety_concern(text)
        upstream = mask_pii(text)
        if concern is None:
            return Screened(upstream)
        return Screened(upstream, safety_answer(concern, self._settings), concern)

    async def context(self, live: LiveSession, text: str) -> tuple[Message, ...]:
        persistence = self._gateway.persistence
        budget = self._settings.memory_budget_tokens
        if persistence is None or budget <= 0:
            return ()
        try:
            if not await self._has_memories(live.user_id):
                return ()
            message = await memory_message(
                persistence.pool, live.user_id, text, budget_tokens=budget
            )
        except DATABASE_ERRORS as exc:  # the turn goes on without them
            log.warning("memories unavailable: %s", type(exc).__name__)
            return ()
        return () if message is None else (message,)

    def tools(self, live: LiveSession) -> tuple[ToolSpec, ...]:
        if not live.config.tools or self._gateway.persistence is None:
            return ()
        return TOOL_SPECS

    async def run_tool(self, live: LiveSession, call: ToolCall) -> ToolOutcome:
        context = ToolContext(self._gateway, live.user_id, live.session_id)
        return await run_tool(context, call)

    def memories_changed(self, user_id: str) -> None:
        """A memory of the user was added or deleted here: read them again on the next turn."""
        self._presence.pop(user_id, None)

    async def _has_memories(self, user_id: str) -> bool:
        now = time.monotonic()
        known = self._presence.get(user_id)
        if known is not None and now - known[0] < PRESENCE_TTL_S:
            self._presence.move_to_end(user_id)
            return known[1]
        persistence = self._gateway.persistence
        assert persistence is not None
        present = bool(await list_memories(persistence.pool, user_id, limit=1))
        self._presence[user_id] = (now, present)
        self._presence.move_to_end(user_id)
        while len(self._presence) > _PRESENCE_MAX:
            self._presence.popitem(last=False)
        return present
