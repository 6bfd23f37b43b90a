"""Tool calling in the wire conversions, on recorded OpenAI and Anthropic payloads."""

from __future__ import annotations

import json
from typing import Any

import pytest

from providers import wire
from providers.chat import ChatChunk, ChatRequest, Message, ToolCall, ToolSpec, Usage
from providers.errors import MalformedResponse

PROGRESS = ToolSpec(
    "get_progress",
    "The user's practice progress over the last days.",
    {
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 90}},
        "required": ["days"],
    },
)
DRILLS = ToolSpec(
    "search_drills",
    "Search the drill catalog.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
CALL = ToolCall("call_Ab12", "get_progress", '{"days": 30}')
ROUND = (
    Message("system", "You are a coach."),
    Message("user", "How is my progress?"),
    Message("assistant", "", tool_calls=(CALL,)),
    Message("tool", '{"sessions": 12}', tool_call_id="call_Ab12"),
)


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B7",
        "object": "chat.completion.chunk",
        "created": 1733500000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_bba3c8e70b",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }


def _piece(index: int, arguments: str) -> dict[str, Any]:
    return {"index": index, "function": {"arguments": arguments}}


def _head(index: int, call_id: str, name: str) -> dict[str, Any]:
    function = {"name": name, "arguments": ""}
    return {"index": index, "id": call_id, "type": "function", "function": function}


# A recorded stream from api.openai.com (ids shortened): two parallel tool calls.
OPENAI_TOOL_STREAM: list[dict[str, Any]] = [
    _chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_head(0, "call_Ab12", "get_progress")],
        }
    ),
    _chunk({"tool_calls": [_piece(0, '{"da')]}),
    _chunk({"tool_calls": [_piece(0, 'ys": 3')]}),
    _chunk({"tool_calls": [_piece(0, "0}")]}),
    _chunk({"tool_calls": [_head(1, "call_Cd34", "search_drills")]}),
    _chunk({"tool_calls": [_piece(1, '{"query": "breath')]}),
    _chunk({"tool_calls": [_piece(1, 'ing"}')]}),
    _chunk({}, "tool_calls"),
    {**_chunk({}), "choices": [], "usage": {"prompt_tokens": 88, "completion_tokens": 41}},
]

# A recorded Messages stream from api.anthropic.com: text, then a streamed tool_use block.
ANTHROPIC_TOOL_USE_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01X",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 390, "output_tokens": 3},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Let me check."},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01A",
            "name": "get_progress",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"days": '},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": "7}"},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 52},
    },
    {"type": "message_stop"},
]


def test_openai_params_carry_tools_and_the_tool_round() -> None:
    req = ChatRequest(
        model="gpt-4o-mini", messages=ROUND, tools=(PROGRESS,), tool_choice={"name": "get_progress"}
    )
    params = wire.openai_params(req)
    assert params["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_progress",
                "description": PROGRESS.description,
                "parameters": PROGRESS.parameters,
            },
        }
    ]
    assert params["tool_choice"] == {"type": "function", "function": {"name": "get_progress"}}
    assert params["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Ab12",
                    "type": "function",
                    "function": {"name": "get_progress", "arguments": '{"days": 30}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_Ab12", "content": '{"sessions": 12}'},
    ]


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_openai_tool_choice_words_pass_as_they_are(choice: str) -> None:
    req = ChatRequest(model="m", messages=ROUND[:2], tools=(PROGRESS,), tool_choice=choice)
    assert wire.openai_params(req)["tool_choice"] == choice


def test_no_tools_no_tool_fields() -> None:
    req = ChatRequest(model="m", messages=ROUND[:2], tool_choice="auto")
    assert "tools" not in wire.openai_params(req)
    assert "tool_choice" not in wire.openai_params(req)  # OpenAI refuses one without tools
    assert "tools" not in wire.anthropic_params(req)


def test_anthropic_params_carry_tools_and_merge_tool_results() -> None:
    second = ToolCall("toolu_2", "search_drills", '{"query": "breath"}')
    messages = (
        Message("system", "You are a coach."),
        Message("user", "How is my progress, and a drill?"),
        Message("assistant", "Checking.", tool_calls=(CALL, second)),
        Message("tool", '{"sessions": 12}', tool_call_id="call_Ab12"),
        Message("tool", '{"drills": []}', tool_call_id="toolu_2"),
        Message("user", "Thanks"),
    )
    req = ChatRequest(
        model="claude-haiku-4-5", messages=messages, tools=(PROGRESS,), tool_choice="required"
    )
    params = wire.anthropic_params(req)
    assert params["tools"] == [
        {
            "name": "get_progress",
            "description": PROGRESS.description,
            "input_schema": PROGRESS.parameters,
        }
    ]
    assert params["tool_choice"] == {"type": "any"}
    assert params["system"] == "You are a coach."
    assert params["messages"] == [
        {"role": "user", "content": "How is my progress, and a drill?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "call_Ab12",
                    "name": "get_progress",
                    "input": {"days": 30},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "search_drills",
                    "input": {"query": "breath"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_Ab12", "content": '{"sessions": 12}'},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"drills": []}'},
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_anthropic_params_send_malformed_arguments_back_as_text() -> None:
    broken = ToolCall("toolu_3", "get_progress", '{"days": 3')
    messages = (Message("user", "progress?"), Message("assistant", "", tool_calls=(broken,)))
    req = ChatRequest(model="m", messages=messages, tools=(PROGRESS,))
    blocks = wire.anthropic_params(req)["messages"][1]["content"]
    assert blocks == [
        {
            "type": "tool_use",
            "id": "toolu_3",
            "name": "get_progress",
            "input": {"arguments": '{"days": 3'},
        }
    ]  # no empty text block: the API refuses those


def test_anthropic_schema_tool_joins_real_tools_and_is_forced() -> None:
    schema = {"type": "object", "properties": {"tip": {"type": "string"}}}
    req = ChatRequest(
        model="m", messages=ROUND[:2], tools=(PROGRESS,), json_schema=schema, schema_name="tip"
    )
    params = wire.anthropic_params(req)
    assert [t["name"] for t in params["tools"]] == ["get_progress", "tip"]
    assert params["tool_choice"] == {"type": "tool", "name": "tip"}


def test_openai_feed_assembles_parallel_tool_calls() -> None:
    tally = wire.StreamTally.for_request(ChatRequest(model="gpt-4o-mini", messages=ROUND[:2]))
    texts = [wire.openai_feed(tally, c) for c in OPENAI_TOOL_STREAM]
    assert "".join(texts) == ""
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(88, 41),
        finish_reason="tool_calls",
        model="gpt-4o-mini-2024-07-18",
        tool_calls=(
            ToolCall("call_Ab12", "get_progress", '{"days": 30}'),
            ToolCall("call_Cd34", "search_drills", '{"query": "breathing"}'),
        ),
    )


def test_openai_feed_passes_malformed_arguments_along() -> None:
    tally = wire.StreamTally()
    for chunk in (OPENAI_TOOL_STREAM[0], _chunk({"tool_calls": [_piece(0, '{"days": ')]})):
        wire.openai_feed(tally, chunk)
    wire.openai_feed(tally, _chunk({}, "tool_calls"))
    assert tally.final_chunk().tool_calls == (ToolCall("call_Ab12", "get_progress", '{"days": '),)


def test_openai_call_without_a_name_is_malformed() -> None:
    tally = wire.StreamTally()
    wire.openai_feed(tally, _chunk({"tool_calls": [_piece(0, "{}")]}))  # no head: no id, no name
    wire.openai_feed(tally, _chunk({}, "tool_calls"))
    with pytest.raises(MalformedResponse, match="tool call 0"):
        tally.final_chunk()


def test_openai_call_cut_by_the_token_limit_is_a_length_finish() -> None:
    tally = wire.StreamTally()
    for chunk in OPENAI_TOOL_STREAM[:2]:
        wire.openai_feed(tally, chunk)
    wire.openai_feed(tally, _chunk({}, "length"))
    final = tally.final_chunk()
    assert (final.finish_reason, final.tool_calls) == ("length", ())


@pytest.mark.parametrize(
    "fragments", ["not a list", [42], [{"index": "0"}], [{"index": 0, "function": [1]}]]
)
def test_openai_malformed_tool_fragments(fragments: object) -> None:
    with pytest.raises(MalformedResponse):
        wire.openai_feed(wire.StreamTally(), _chunk({"tool_calls": fragments}))


def _anthropic_tally(*tools: ToolSpec, schema: dict[str, Any] | None = None) -> wire.StreamTally:
    req = ChatRequest(model="claude-haiku-4-5", messages=ROUND[:2], tools=tools, json_schema=schema)
    return wire.StreamTally.for_request(req)


def test_anthropic_feed_assembles_a_tool_use_block() -> None:
    tally = _anthropic_tally(PROGRESS)
    texts = [wire.anthropic_feed(tally, e) for e in ANTHROPIC_TOOL_USE_STREAM]
    assert "".join(texts) == "Let me check."
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(390, 52),
        finish_reason="tool_calls",
        model="claude-haiku-4-5",
        tool_calls=(ToolCall("toolu_01A", "get_progress", '{"days": 7}'),),
    )


def test_anthropic_schema_tool_stays_the_answer_text() -> None:
    """The JSON-schema tool, even beside real tools, is the answer: "stop", its input as text."""
    tally = _anthropic_tally(DRILLS, schema={"type": "object"})
    renamed = [
        {**e, "content_block": {**e["content_block"], "name": "answer"}}
        if e["type"] == "content_block_start"
        else e
        for e in ANTHROPIC_TOOL_USE_STREAM
    ]
    texts = [wire.anthropic_feed(tally, e) for e in renamed]
    assert "".join(texts) == 'Let me check.{"days": 7}'
    final = tally.final_chunk()
    assert (final.finish_reason, final.tool_calls) == ("stop", ())


def test_anthropic_tool_use_without_offered_tools_stays_text() -> None:
    tally = wire.StreamTally()
    texts = [wire.anthropic_feed(tally, e) for e in ANTHROPIC_TOOL_USE_STREAM]
    assert "".join(texts) == 'Let me check.{"days": 7}'
    assert tally.final_chunk().finish_reason == "stop"


def test_anthropic_stream_that_ends_mid_tool_use_is_malformed() -> None:
    tally = _anthropic_tally(PROGRESS)
    events = [
        e for e in ANTHROPIC_TOOL_USE_STREAM if e != {"type": "content_block_stop", "index": 1}
    ]
    for event in events:
        wire.anthropic_feed(tally, event)
    assert tally.finished
    with pytest.raises(MalformedResponse, match="middle of tool call 1"):
        tally.final_chunk()


def test_anthropic_tool_use_cut_by_max_tokens_is_a_length_finish() -> None:
    tally = _anthropic_tally(PROGRESS)
    for event in ANTHROPIC_TOOL_USE_STREAM[:7]:
        wire.anthropic_feed(tally, event)
    wire.anthropic_feed(tally, {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}})
    wire.anthropic_feed(tally, {"type": "message_stop"})
    final = tally.final_chunk()
    assert (final.finish_reason, final.tool_calls) == ("length", ())


def test_recorded_arguments_are_the_models_json_text() -> None:
    tally = _anthropic_tally(PROGRESS)
    for event in ANTHROPIC_TOOL_USE_STREAM:
        wire.anthropic_feed(tally, event)
    (call,) = tally.final_chunk().tool_calls
    assert json.loads(call.arguments) == {"days": 7}
