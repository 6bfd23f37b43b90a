"""The chat provider interface and the plain data it speaks."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = ["ChatChunk", "ChatProvider", "ChatRequest", "Message", "Usage"]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


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


class ChatProvider(ABC):
    """A chat model vendor. `stream` raises only `providers.errors.ProviderError`s."""

    name: str
    kind: str

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer to `request`, ending with a chunk that carries `finish_reason`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most adapters override it
        """Release connections."""
