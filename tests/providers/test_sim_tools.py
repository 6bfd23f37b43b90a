"""The sim's tool calls, as each vendor's own SDK reads them, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from providers.sim import RunningSim, schema_errors
from tests.providers.test_sim import claude, oai

PARAMS: Any = {
    "type": "object",
    "properties": {
        "focus_ids": {
            "type": "array",
            "items": {"enum": ["breathing", "pacing", "pitch_accuracy"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "reason": {"type": "string"},
    },
    "required": ["focus_ids"],
    "additionalProperties": False,
}
DESCRIPTION = "Propose new active focuses for the user."
OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "propose_focus_change",
            "description": DESCRIPTION,
            "parameters": PARAMS,
        },
    },
    {"type": "function", "function": {"name": "get_progress", "description": "Progress."}},
]
ANTHROPIC_TOOLS: Any = [
    {"name": "propose_focus_change", "description": DESCRIPTION, "input_schema": PARAMS},
    {"name": "get_progress", "description": "Progress.", "input_schema": {"type": "object"}},
]
ASK: Any = [{"role": "user", "content": "Please change my focus to breathing and pacing."}]
RESULT = '{"change": {"id": "chg_7f3a", "status": "pending"}}'


async def test_openai_streams_a_call_as_openai_does(fresh_sim: RunningSim) -> None:
    async with oai(fresh_sim) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, tools=OPENAI_TOOLS, stream=True
        )
        chunks = [chunk async for chunk in stream]
    head, *pieces, end = chunks
    (call,) = head.choices[0].delta.tool_calls or []
    assert (call.index, call.type, call.function and call.function.name) == (
        0,
        "function",
        "propose_focus_change",
    )
    assert call.id and call.id.startswith("call_")
    assert head.choices[0].delta.content is None
    fragments: list[Any] = [(c.choices[0].delta.tool_calls or [])[0] for c in pieces]
    arguments = "".join(f.function.arguments for f in fragments)
    assert len(pieces) > 1  # streamed in pieces
    assert json.loads(arguments) == {"focus_ids": ["breathing", "pacing"]}
    assert end.choices[0].finish_reason == "tool_calls"


async def test_openai_non_streamed_call(fresh_sim: RunningSim) -> None:
    async with oai(fresh_sim) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, tools=OPENAI_TOOLS
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call: Any
    (call,) = choice.message.tool_calls or []
    assert schema_errors(PARAMS, json.loads(call.function.arguments)) == []


async def test_anthropic_streams_a_tool_use_block(fresh_sim: RunningSim) -> None:
    async with (
        claude(fresh_sim) as client,
        client.messages.stream(
            model="claude-haiku-4-5", max_tokens=200, messages=ASK, tools=ANTHROPIC_TOOLS
        ) as stream,
    ):
        kinds = [event.type async for event in stream]
        message = await stream.get_final_message()
    assert "input_json" in kinds  # the SDK's event for each input_json_delta
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert (block.name, block.input) == (
        "propose_focus_change",
        {"focus_ids": ["breathing", "pacing"]},
    )


async def test_anthropic_answers_a_tool_result_in_text(fresh_sim: RunningSim) -> None:
    async with claude(fresh_sim) as client:
        message = await client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=200,
            tools=ANTHROPIC_TOOLS,
            messages=[
                *ASK,
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "propose_focus_change",
                            "input": {"focus_ids": ["breathing"]},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": RESULT}
                    ],
                },
            ],
        )
    assert message.stop_reason == "end_turn"
    (block,) = message.content
    assert block.type == "text" and "chg_7f3a" in block.text and "pending" in block.text


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gpt-4o"])
async def test_calls_are_reproducible_with_the_seed(fresh_sim: RunningSim, model: str) -> None:
    async def once() -> Any:
        async with oai(fresh_sim) as client:
            completion = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Find me an exercise for long phrases"}],
                tools=[
                    {
                        "type": "function",
                        "function": {
                            "name": "search_drills",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "query": {"type": "string"},
                                    "limit": {"type": "integer", "minimum": 1, "maximum": 9},
                                },
                                "required": ["query", "limit"],
                            },
                        },
                    }
                ],
            )
        return completion.choices[0].message.tool_calls

    first, second = await once(), await once()
    assert first == second and first is not None


async def test_a_schema_it_cannot_fill_gets_empty_arguments(fresh_sim: RunningSim) -> None:
    odd: Any = {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}, "required": ["x"]}
    async with oai(fresh_sim) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=ASK,
            tools=[{"type": "function", "function": {"name": "odd", "parameters": odd}}],
            tool_choice="required",
        )
    call: Any
    (call,) = completion.choices[0].message.tool_calls or []
    assert (call.function.name, call.function.arguments) == ("odd", "{}")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/chat/completions", {"tools": [{"type": "function"}]}, "tools[0].function.name"),
        ("/v1/chat/completions", {"tools": [], "tool_choice": "sometimes"}, "tool_choice"),
        ("/v1/messages", {"max_tokens": 9, "tools": [{"name": "x"}]}, "tools.0.input_schema"),
        ("/v1/messages", {"max_tokens": 9, "tool_choice": {"type": "all"}}, "tool_choice.type"),
    ],
)
async def test_bad_tools_are_refused_as_the_vendor_would(
    fresh_sim: RunningSim, path: str, body: dict[str, Any], message: str
) -> None:
    async with httpx.AsyncClient(base_url=fresh_sim.url) as http:
        response = await http.post(
            path, json={"model": "m", "messages": ASK, **body}, headers={"x-api-key": "k"}
        )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_the_openai_sdk_raises_no_error_on_a_call(fresh_sim: RunningSim) -> None:
    """The SDK's own stream helper accumulates the call from the sim's fragments."""
    async with (
        oai(fresh_sim) as client,
        client.chat.completions.stream(
            model="gpt-4o-mini", messages=ASK, tools=OPENAI_TOOLS
        ) as stream,
    ):
        final = await stream.get_final_completion()
    call: Any
    (call,) = final.choices[0].message.tool_calls or []
    assert call.function.name == "propose_focus_change"
    assert call.function.parsed_arguments is None  # no strict schema given; arguments are text
    assert json.loads(call.function.arguments) == {"focus_ids": ["breathing", "pacing"]}
