"""What the turn engine asks of the agent around a session turn (DESIGN.md, "Agent"):
guardrails on the user's text, memories for the context, and server tools to offer and run.

The engine knows this interface only; the gateway implements it (`gateway.agent.GatewayAgent`)
on its database and tools, so the engine stays free of storage and of the tools' queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from providers.chat import Message, ToolCall, ToolSpec
from streams.session import LiveSession

__all__ = ["Screened", "ToolResult", "TurnAgent"]


@dataclass(frozen=True, slots=True)
class Screened:
    """The user's text after the guardrails: what may go upstream (personal data masked), and,
    for a message about pain, injury or self-harm, the safety `answer` given instead of the
    model's, with its `flag` ("injury" | "self_harm") kept on the interaction."""

    upstream_text: str
    answer: str | None = None
    flag: str | None = None


class ToolResult(Protocol):
    """A server tool's outcome: `content` for the model, `summary` for the client, and the
    pending change it proposed, if any (`change.proposed`)."""

    @property
    def ok(self) -> bool: ...

    @property
    def content(self) -> str: ...

    @property
    def summary(self) -> str: ...

    @property
    def change(self) -> dict[str, Any] | None: ...


class TurnAgent(Protocol):
    def screen(self, text: str) -> Screened:
        """Guardrails on one message of the user (pure, fast: it runs on every turn)."""

    async def context(self, live: LiveSession, text: str) -> tuple[Message, ...]:
        """Messages that join the turn's context after the coach's system prompt (memories)."""

    def tools(self, live: LiveSession) -> tuple[ToolSpec, ...]:
        """The server tools offered on this session's turns (none when it has tools off)."""

    async def run_tool(self, live: LiveSession, call: ToolCall) -> ToolResult:
        """Run one call for the session's user; never raises for a bad call."""
