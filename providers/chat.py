"""The chat provider interface and the plain data it speaks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = ["ChatChunk", "ChatProvider", "ChatRequest", "Message", "ToolCall", "ToolSpec", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: `parameters` is the JSON schema (an object) of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model called. `arguments` is the JSON text as the model wrote it: it may be
    malformed, and whoever runs the tool reports that back rather than trusting it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation. An assistant message may carry the `tool_calls` it made;
    a `tool` message answers one of them (`tool_call_id`) with the tool's output in `content`."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One provider call. `json_schema`, when set, asks for a JSON answer that fits it."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    json_schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    request_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()
    # "auto" | "none" | "required" | {"name": ...} (one tool forced); None: the vendor default.
    tool_choice: str | dict[str, Any] | None = None


class ChatChunk(NamedTuple):
    """A piece of a streamed answer: a text delta, and/or the final usage and finish reason.

    Immutable like the dataclasses around it, but a named tuple: one is made per streamed token,
    and a frozen dataclass costs more to build (its `__init__` goes through
    `object.__setattr__` for each field).
    """

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str | None = None
    # Complete tool calls (assembled from the vendor's streamed fragments), on the final chunk,
    # whose finish_reason is then "tool_calls".
    tool_calls: tuple[ToolCall, ...] = ()


class ChatProvider(ABC):
    """A chat model vendor. `stream` raises only `providers.errors.ProviderError`s."""

    name: str
    kind: str

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer to `request`, ending with a chunk that carries `finish_reason`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters override it
        """Release connections."""
