"""A client's tools on the OpenAI-compatible route: `tools`, `tool_choice`, and the messages of a
tool round (assistant `tool_calls`, `role: "tool"` results), read into the provider types.

The gateway runs none of these tools: it passes them to the model and returns the model's
`tool_calls` as OpenAI does, so an agent built on the `openai` SDK runs its own loop through
the gateway. Everything is checked here, each bad field a 400 naming it: an upstream would
refuse it later as a failed turn, and the simulated one would answer it with a 500.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import ApiError
from gateway.requests import wrong_type
from providers.chat import Message, ToolCall, ToolSpec
from streams.events import MAX_TEXT_CHARS

__all__ = ["parse_tool_calls", "parse_tool_choice", "parse_tools", "split_turn", "tool_calls_json"]

# As OpenAI and Anthropic both require of a tool's name.
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_TOOLS = 128  # OpenAI's limit
_MAX_DESCRIPTION = 4096
_MAX_ID = 128
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def _name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(field, "a string", value)
    if not _NAME.match(value):
        raise _bad(f"{field} must be 1 to 64 letters, digits, '_' or '-'")
    return value


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong_type(field, "an object", value)
    return value


def parse_tools(raw: Any) -> tuple[ToolSpec, ...]:
    """`tools`: `[{"type": "function", "function": {name, description?, parameters?}}]`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise wrong_type("tools", "an array", raw)
    if len(raw) > MAX_TOOLS:
        raise _bad(f"tools must hold at most {MAX_TOOLS} tools")
    tools = [_tool(item, f"tools[{i}]") for i, item in enumerate(raw)]
    names = [tool.name for tool in tools]
    if len(set(names)) != len(names):
        raise _bad("tools must have distinct function names")
    return tuple(tools)


def _tool(item: Any, field: str) -> ToolSpec:
    item = _object(item, field)
    if item.get("type") != "function":
        raise _bad(f'{field}.type must be "function"')
    function = _object(item.get("function"), f"{field}.function")
    name = _name(function.get("name"), f"{field}.function.name")
    description = function.get("description") or ""
    if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION:
        raise _bad(f"{field}.function.description must be a string of at most 4096 characters")
    parameters = function.get("parameters")
    if parameters is None:
        return ToolSpec(name, description, _EMPTY_PARAMETERS)
    parameters = _object(parameters, f"{field}.function.parameters")
    if parameters.get("type", "object") != "object":
        raise _bad(f'{field}.function.parameters.type must be "object"')
    properties = parameters.get("properties", {})
    if not isinstance(properties, dict) or not all(
        isinstance(p, dict) for p in properties.values()
    ):
        raise _bad(f"{field}.function.parameters.properties must map names to schema objects")
    return ToolSpec(name, description, {"type": "object", **parameters})


def parse_tool_choice(raw: Any, tools: tuple[ToolSpec, ...]) -> str | dict[str, Any] | None:
    """`tool_choice`: "auto" | "none" | "required" | `{"type": "function", "function":
    {"name"}}` naming an offered tool; as OpenAI, only with `tools`."""
    if raw is None:
        return None
    if not tools:
        raise _bad("tool_choice is only allowed when tools are given")
    if isinstance(raw, str):
        if raw not in ("auto", "none", "required"):
            raise _bad('tool_choice must be "auto", "none", "required" or a function')
        return raw
    choice = _object(raw, "tool_choice")
    if choice.get("type") != "function":
        raise _bad('tool_choice.type must be "function"')
    function = _object(choice.get("function"), "tool_choice.function")
    name = _name(function.get("name"), "tool_choice.function.name")
    if name not in {tool.name for tool in tools}:
        raise _bad(f"tool_choice names {name!r}, which is not in tools")
    return {"name": name}


def parse_tool_calls(raw: Any, field: str) -> tuple[ToolCall, ...]:
    """An assistant message's `tool_calls`, as a client sends back what the model called."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise wrong_type(field, "an array", raw)
    calls = []
    for i, item in enumerate(raw):
        item = _object(item, f"{field}[{i}]")
        call_id = item.get("id")
        if not isinstance(call_id, str) or not 0 < len(call_id) <= _MAX_ID:
            raise _bad(f"{field}[{i}].id must be a string of 1 to {_MAX_ID} characters")
        if item.get("type", "function") != "function":
            raise _bad(f'{field}[{i}].type must be "function"')
        function = _object(item.get("function"), f"{field}[{i}].function")
        name = _name(function.get("name"), f"{field}[{i}].function.name")
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            raise wrong_type(f"{field}[{i}].function.arguments", "a string", arguments)
        calls.append(ToolCall(call_id, name, arguments))
    return tuple(calls)


def split_turn(
    messages: list[Message],
) -> tuple[tuple[Message, ...], str, tuple[Message, ...]]:
    """(context, the last user message's text, what follows it): a round that continues a
    tool call ends with the assistant's calls and their results, after the user's text."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    last = messages[-1]
    if not users or last.role not in ("user", "tool"):
        message = "the last message must be a non-empty user message or a tool result"
        raise ApiError(400, "empty_text", message)
    at = users[-1]
    text = messages[at].content
    if not text.strip():
        raise ApiError(400, "empty_text", "the last user message must not be empty")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(
            400, "text_too_long", f"the user message is over {MAX_TEXT_CHARS} characters"
        )
    _check_results(messages)
    return tuple(messages[:at]), text, tuple(messages[at + 1 :])


def _check_results(messages: list[Message]) -> None:
    """Each tool result answers a call of an assistant message before it, once."""
    open_calls: set[str] = set()
    for i, message in enumerate(messages):
        open_calls.update(call.id for call in message.tool_calls)
        if message.role != "tool":
            continue
        if message.tool_call_id not in open_calls:
            raise _bad(f"messages[{i}].tool_call_id does not answer a tool call before it")
        open_calls.discard(message.tool_call_id)


def tool_calls_json(calls: list[ToolCall], *, indexed: bool) -> list[dict[str, Any]]:
    """`tool_calls` as OpenAI returns them (with `index`, as a stream's delta carries them)."""
    return [
        {
            **({"index": i} if indexed else {}),
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for i, call in enumerate(calls)
    ]
