"""A client's own tools through the OpenAI-compatible route: the real `openai` SDK runs an
agent loop (call, get `tool_calls`, send the tool's result, get the final text) against the
gateway on loopback, which passes the tools to the simulated upstream over both vendors' wires."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from gateway.server import RunningGateway

Token = Callable[..., str]

LOG_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "lookup_practice_log",
        "description": "Look up the practice log of the user for one instrument.",
        "parameters": {
            "type": "object",
            "properties": {"instrument": {"type": "string"}},
            "required": ["instrument"],
            "additionalProperties": False,
        },
    },
}
PROGRESS_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_progress", "description": "The user's practice progress."},
}
TOOLS: Any = [LOG_TOOL, PROGRESS_TOOL]
ASK: Any = [
    {"role": "system", "content": "You are a cello coach."},
    {"role": "user", "content": "Look up my practice log, please."},
]
RESULT = '{"entries": 17, "longest_minutes": 45, "last_piece": "bach-prelude-1"}'
# Each vendor's wire: the sim's OpenAI and Anthropic endpoints, through the route's targets.
MODELS = ["gpt-4o-mini", "claude-haiku-4-5"]


def _client(gateway: RunningGateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def _result_message(call_id: str) -> Any:
    return {"role": "tool", "tool_call_id": call_id, "content": RESULT}


@pytest.mark.parametrize("model", MODELS)
async def test_an_agent_loop_without_streaming(
    gateway: RunningGateway, token: Token, model: str
) -> None:
    async with _client(gateway, token()) as client:
        first = await client.chat.completions.create(model=model, messages=ASK, tools=TOOLS)
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content is None
        call: Any
        (call,) = choice.message.tool_calls or []
        assert call.type == "function" and call.id
        assert call.function.name == "lookup_practice_log"
        assert set(json.loads(call.function.arguments)) == {"instrument"}
        messages: Any = [
            *ASK,
            choice.message.model_dump(exclude_none=True),
            _result_message(call.id),
        ]
        final = await client.chat.completions.create(
            model=model,
            messages=messages,
            tools=TOOLS,
        )
    answer = final.choices[0]
    assert answer.finish_reason == "stop" and not answer.message.tool_calls
    assert answer.message.content and "17" in answer.message.content
    assert "bach-prelude-1" in answer.message.content


@pytest.mark.parametrize("model", MODELS)
async def test_an_agent_loop_streamed(gateway: RunningGateway, token: Token, model: str) -> None:
    async with _client(gateway, token()) as client:
        stream = await client.chat.completions.create(
            model=model,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_progress"}},
            stream=True,
        )
        chunks = [chunk async for chunk in stream]
        fragments = [
            call for c in chunks if c.choices for call in (c.choices[0].delta.tool_calls or [])
        ]
        finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert [f for f in finishes if f] == ["tool_calls"]
        (call,) = fragments
        assert (call.index, call.type) == (0, "function")
        assert call.function is not None and call.function.name == "get_progress"
        assert call.id and call.function.arguments == "{}"
        assistant: Any = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": call.id, "type": "function", "function": call.function.model_dump()}
            ],
        }
        second = await client.chat.completions.create(
            model=model,
            messages=[*ASK, assistant, _result_message(call.id)],
            tools=TOOLS,
            stream=True,
        )
        text = "".join([c.choices[0].delta.content or "" async for c in second if c.choices])
    assert "longest minutes 45" in text


async def test_tool_choice_none_answers_in_text(gateway: RunningGateway, token: Token) -> None:
    async with _client(gateway, token()) as client:
        completion = await client.chat.completions.create(
            model="coach",
            messages=ASK,
            tools=TOOLS,
            tool_choice="none",
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content


async def test_malformed_arguments_reach_the_client_as_the_model_wrote_them(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(invalid_json_rate=1.0)
    async with _client(gateway, token()) as client:
        completion = await client.chat.completions.create(
            model="coach",
            messages=ASK,
            tools=TOOLS,
        )
    call: Any
    (call,) = completion.choices[0].message.tool_calls or []
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.function.arguments)


_ANSWERED = {"role": "tool", "tool_call_id": "call_nowhere", "content": "{}"}
_CALLED = {
    "role": "assistant",
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": {}}}
    ],
}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": {"type": "function"}}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].function"),
        ({"tools": [{"type": "code", "function": {"name": "f"}}]}, "tools[0].type"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
            "tools[0].function.parameters",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {"name": "f", "parameters": {"type": "string"}},
                    }
                ]
            },
            "tools[0].function.parameters.type",
        ),
        ({"tools": [LOG_TOOL, LOG_TOOL]}, "distinct"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "always"}, "tool_choice"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"messages": [*ASK, _ANSWERED]}, "messages[2].tool_call_id"),
        (
            {"messages": [*ASK, _CALLED, {**_ANSWERED, "tool_call_id": "call_1"}]},
            "messages[2].tool_calls[0].function.arguments",
        ),
        ({"messages": [*ASK, {"role": "tool", "content": "{}"}]}, "messages[2].tool_call_id"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)
async def test_bad_tools_are_a_400_naming_the_field(
    gateway: RunningGateway, token: Token, extra: dict[str, Any], field: str
) -> None:
    async with _client(gateway, token()) as client:
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(**{"model": "coach", "messages": ASK, **extra})
    body: Any = info.value.body
    assert body["code"] in ("invalid_request", "unsupported_parameter")
    assert field in body["message"]
