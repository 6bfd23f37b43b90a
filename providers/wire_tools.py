"""Tool calling in the OpenAI and Anthropic wire formats: pure conversions, no I/O.

Requests: OpenAI gets `tools: [{"type": "function", "function": {...}}]`, assistant messages
with `tool_calls` and `role: "tool"` messages; Anthropic gets `tools: [{name, description,
input_schema}]`, `tool_use` blocks in assistant turns and `tool_result` blocks in user turns
(consecutive tool results merge into one user turn: its Messages API wants roles to alternate).

Answers: the vendors stream a call in fragments (OpenAI `delta.tool_calls` pieces by index,
Anthropic a `tool_use` content block then `input_json_delta` pieces); `ToolCallParts` puts them
back together. Arguments stay the JSON text the model wrote, parsed by no one here: a model may
write malformed JSON, and whoever runs the tool says so to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.chat import Message, ToolCall, ToolSpec
from providers.errors import MalformedResponse

__all__ = [
    "ToolCallParts",
    "anthropic_messages",
    "anthropic_tool_choice",
    "anthropic_tools",
    "openai_message",
    "openai_tool_choice",
    "openai_tools",
]

_OPENAI_CHOICES = ("auto", "none", "required")
_ANTHROPIC_CHOICES = {"auto": "auto", "none": "none", "required": "any"}


# -- requests: OpenAI ------------------------------------------------------------------------


def openai_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """`tools` of a chat completions request."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
    ]


def openai_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """ "auto" | "none" | "required" as they are; `{"name": n}` as OpenAI forces one function."""
    if isinstance(choice, str):
        if choice not in _OPENAI_CHOICES:
            raise ValueError(f"tool_choice {choice!r} is not one of {_OPENAI_CHOICES}")
        return choice
    return {"type": "function", "function": {"name": _forced_name(choice)}}


def openai_message(message: Message) -> dict[str, Any]:
    """One message of a chat completions request."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


# -- requests: Anthropic ---------------------------------------------------------------------


def anthropic_tools(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    """`tools` of a Messages request."""
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
        for tool in tools
    ]


def anthropic_tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    """`tool_choice` of a Messages request: "required" is Anthropic's "any"."""
    if isinstance(choice, str):
        if choice not in _ANTHROPIC_CHOICES:
            raise ValueError(f"tool_choice {choice!r} is not one of {tuple(_ANTHROPIC_CHOICES)}")
        return {"type": _ANTHROPIC_CHOICES[choice]}
    return {"type": "tool", "name": _forced_name(choice)}


def anthropic_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """User and assistant turns, alternating: runs of one role (tool results are the user's)
    merge. A turn of text alone keeps the plain string form, its texts joined by a blank line
    (the common case, kept cheap: no blocks are built for it)."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = "user" if message.role == "tool" else message.role
        last = merged[-1] if merged and merged[-1]["role"] == role else None
        plain = message.role != "tool" and not message.tool_calls
        if last is None:
            content = message.content if plain else _blocks(message)
            merged.append({"role": role, "content": content})
        elif plain and isinstance(last["content"], str):
            last["content"] += "\n\n" + message.content
        else:
            last["content"] = _as_blocks(last["content"]) + _blocks(message)
    return merged


def _blocks(message: Message) -> list[dict[str, Any]]:
    """A message as content blocks. The API refuses empty text blocks, and a tool turn often
    has no text beside its calls."""
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content,
            }
        ]
    blocks = _as_blocks(message.content)
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call.arguments)}
        )
    return blocks


def _as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if content else []


def _input(arguments: str) -> dict[str, Any]:
    """A call's `input` must be an object: arguments the model wrote malformed are sent back as
    they were, under `arguments`, rather than dropped."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": arguments}


def _forced_name(choice: dict[str, Any]) -> str:
    name = choice.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("a forced tool_choice needs a 'name'")
    return name


# -- streamed answers ------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    closed: bool = False  # Anthropic's content_block_stop came


class ToolCallParts:
    """The tool calls of one streamed answer, assembled from the vendor's fragments, by index
    (OpenAI's call index, Anthropic's content block index)."""

    __slots__ = ("_needs_close", "_parts")

    def __init__(self) -> None:
        self._parts: dict[int, _Part] = {}
        self._needs_close = False

    def __bool__(self) -> bool:
        return bool(self._parts)

    def openai_fragments(self, fragments: object) -> int:
        """Record a `delta.tool_calls` list; returns how many argument pieces it held."""
        if not isinstance(fragments, list):
            raise MalformedResponse(f"`tool_calls` is not a list: {fragments!r:.80}")
        pieces = 0
        for position, fragment in enumerate(fragments):
            if not isinstance(fragment, dict):
                raise MalformedResponse(f"a tool call is not a JSON object: {fragment!r:.80}")
            index = fragment.get("index", position)  # some servers leave the index out
            if not isinstance(index, int):
                raise MalformedResponse(f"a tool call index is not an integer: {index!r:.80}")
            part = self._parts.setdefault(index, _Part())
            part.id = _text(fragment, "id") or part.id
            function = fragment.get("function") or {}
            if not isinstance(function, dict):
                raise MalformedResponse(f"`function` is not a JSON object: {function!r:.80}")
            part.name = _text(function, "name") or part.name
            if arguments := _text(function, "arguments"):
                part.arguments.append(arguments)
                pieces += 1
        return pieces

    def anthropic_start(self, index: int, block: dict[str, Any]) -> None:
        """A `tool_use` content block begins."""
        self._needs_close = True
        part = self._parts.setdefault(index, _Part())
        part.id = _text(block, "id") or ""
        part.name = _text(block, "name") or ""
        if block.get("input"):  # a complete input given at the start (not streamed)
            part.arguments.append(orjson.dumps(block["input"]).decode())

    def anthropic_delta(self, index: object, partial_json: str) -> bool:
        """An `input_json_delta`: True when it belongs to a call recorded here."""
        part = self._parts.get(index) if isinstance(index, int) else None
        if part is None:
            return False
        part.arguments.append(partial_json)
        return True

    def anthropic_stop(self, index: object) -> None:
        if isinstance(index, int) and (part := self._parts.get(index)) is not None:
            part.closed = True

    def calls(self) -> tuple[ToolCall, ...]:
        """The complete calls, in index order; a call left unfinished is a `MalformedResponse`."""
        calls = []
        for index in sorted(self._parts):
            part = self._parts[index]
            if not part.id or not part.name or (self._needs_close and not part.closed):
                raise MalformedResponse(f"the stream ended in the middle of tool call {index}")
            calls.append(ToolCall(part.id, part.name, "".join(part.arguments)))
        return tuple(calls)


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedResponse(f"`{key}` is not a string: {value!r:.80}")
