"""Wire conversions, on recorded OpenAI and Anthropic payloads."""

from __future__ import annotations

from typing import Any

import pytest

from providers import wire
from providers.chat import ChatChunk, ChatRequest, Message, Usage
from providers.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    ProviderError,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)

CONVERSATION = (
    Message("system", "You are a coach."),
    Message("system", "Be brief."),
    Message("user", "Hi"),
    Message("user", "Can you help with pitch?"),
    Message("assistant", "Of course."),
    Message("user", "Thanks"),
)
SCHEMA = {"type": "object", "properties": {"tip": {"type": "string"}}, "required": ["tip"]}

# A recorded stream from api.openai.com (ids shortened), with stream_options.include_usage.
OPENAI_STREAM: list[dict[str, Any]] = [
    {
        "id": "chatcmpl-A1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        "usage": None,
    },
    {
        "id": "chatcmpl-A1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [
            {"index": 0, "delta": {"content": "Breathe"}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    },
    {
        "id": "chatcmpl-A1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [
            {"index": 0, "delta": {"content": " slowly."}, "logprobs": None, "finish_reason": None}
        ],
        "usage": None,
    },
    {
        "id": "chatcmpl-A1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        "usage": None,
    },
    {
        "id": "chatcmpl-A1",
        "object": "chat.completion.chunk",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_0ba0d124f1",
        "choices": [],
        "usage": {
            "prompt_tokens": 19,
            "completion_tokens": 4,
            "total_tokens": 23,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    },
]

# The `data:` of each event of a recorded stream from api.anthropic.com: a forced tool answered
# with streamed JSON. (The SDK drops `ping`s before they reach the adapter; the feed ignores
# them anyway.)
ANTHROPIC_TOOL_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 472, "output_tokens": 2},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_01", "name": "answer", "input": {}},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": '{"tip": "Hum'},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": ' first."}'},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 41},
    },
    {"type": "message_stop"},
]

ANTHROPIC_TEXT_STREAM: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_02",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Relax"}},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": " your jaw"},
    },
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
        "usage": {"output_tokens": 3},
    },
    {"type": "message_stop"},
]


def test_openai_params() -> None:
    request = ChatRequest(
        model="gpt-4o-mini",
        messages=CONVERSATION[:3],
        max_tokens=64,
        temperature=0.2,
        json_schema=SCHEMA,
        schema_name="tip",
    )
    assert wire.openai_params(request) == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a coach."},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 64,
        "temperature": 0.2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "tip", "schema": SCHEMA},
        },
    }


def test_openai_params_leave_unset_options_out() -> None:
    params = wire.openai_params(ChatRequest(model="m", messages=CONVERSATION[2:3]))
    assert set(params) == {"model", "messages", "stream", "stream_options"}


def test_anthropic_params_move_system_and_merge_runs() -> None:
    request = ChatRequest(model="claude-haiku-4-5", messages=CONVERSATION)
    assert wire.anthropic_params(request) == {
        "model": "claude-haiku-4-5",
        "max_tokens": wire.ANTHROPIC_DEFAULT_MAX_TOKENS,
        "system": "You are a coach.\n\nBe brief.",
        "messages": [
            {"role": "user", "content": "Hi\n\nCan you help with pitch?"},
            {"role": "assistant", "content": "Of course."},
            {"role": "user", "content": "Thanks"},
        ],
        "stream": True,
    }
    assert CONVERSATION[2].content == "Hi"  # the input is left alone


def test_anthropic_params_force_the_schema_tool() -> None:
    request = ChatRequest(
        model="c", messages=CONVERSATION[2:3], max_tokens=10, json_schema=SCHEMA, schema_name="tip"
    )
    params = wire.anthropic_params(request)
    assert params["max_tokens"] == 10
    assert "system" not in params
    assert params["tools"] == [
        {
            "name": "tip",
            "description": "Answer with JSON that fits this schema.",
            "input_schema": SCHEMA,
        }
    ]
    assert params["tool_choice"] == {"type": "tool", "name": "tip"}


def test_openai_feed_on_a_recorded_stream() -> None:
    tally = wire.StreamTally(model="gpt-4o-mini")
    texts = [wire.openai_feed(tally, c) for c in OPENAI_STREAM]
    assert texts == ["", "Breathe", " slowly.", "", ""]
    assert tally.finished
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(19, 4), finish_reason="stop", model="gpt-4o-mini-2024-07-18"
    )


def test_openai_stream_without_usage_counts_deltas() -> None:
    tally = wire.StreamTally()
    for chunk in OPENAI_STREAM[:4]:
        wire.openai_feed(tally, chunk)
    assert tally.final_chunk().usage == Usage(0, 2)


def test_openai_stream_cut_before_finish_is_not_finished() -> None:
    tally = wire.StreamTally()
    for chunk in OPENAI_STREAM[:3]:
        wire.openai_feed(tally, chunk)
    assert not tally.finished


def test_anthropic_feed_tool_stream_yields_the_json() -> None:
    tally = wire.StreamTally()
    texts = [wire.anthropic_feed(tally, e) for e in ANTHROPIC_TOOL_STREAM]
    assert "".join(texts) == '{"tip": "Hum first."}'
    assert tally.deltas == 2
    assert tally.finished
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(472, 41), finish_reason="stop", model="claude-haiku-4-5"
    )


def test_anthropic_feed_text_stream() -> None:
    tally = wire.StreamTally()
    texts = [wire.anthropic_feed(tally, e) for e in ANTHROPIC_TEXT_STREAM]
    assert "".join(texts) == "Relax your jaw"
    assert tally.final_chunk().finish_reason == "length"
    assert tally.final_chunk().usage == Usage(25, 3)


def test_anthropic_stream_without_message_stop_is_not_finished() -> None:
    tally = wire.StreamTally()
    for event in ANTHROPIC_TEXT_STREAM[:-1]:
        wire.anthropic_feed(tally, event)
    assert not tally.finished


def test_openai_feed_reads_what_is_there() -> None:
    tally = wire.StreamTally(model="asked-for")
    assert wire.openai_feed(tally, {}) == ""  # no model, no choices, no usage: nothing said
    assert wire.openai_feed(tally, {"choices": None, "usage": None, "model": None}) == ""
    second_choice = {"index": 1, "delta": {"content": "other"}, "finish_reason": "stop"}
    assert wire.openai_feed(tally, {"choices": [second_choice]}) == ""
    assert wire.openai_feed(tally, {"choices": [{"delta": {"content": "Hi"}}]}) == "Hi"
    assert wire.openai_feed(tally, {"usage": {"total_tokens": 3}}) == ""
    assert (tally.model, tally.deltas, tally.finished) == ("asked-for", 1, False)
    assert tally.final_chunk().usage == Usage(0, 1)  # usage without counts: deltas counted


@pytest.mark.parametrize(
    "chunk",
    [
        None,
        [OPENAI_STREAM[1]],
        "data",
        {"choices": {"index": 0}},
        {"choices": ["Hi"]},
        {"choices": [{"index": 0, "delta": "Hi"}]},
        {"choices": [{"index": 0, "delta": {"content": 7}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": 1}]},
        {"choices": [], "usage": {"prompt_tokens": "19", "completion_tokens": 4}},
        {"choices": [], "usage": {"prompt_tokens": True}},
        {"choices": [], "usage": 23},
        {"model": ["gpt-4o-mini"]},
    ],
)
def test_openai_feed_rejects_malformed_chunks(chunk: object) -> None:
    with pytest.raises(MalformedResponse):
        wire.openai_feed(wire.StreamTally(), chunk)


def test_anthropic_feed_ignores_what_is_not_the_answer() -> None:
    tally = wire.StreamTally(model="asked-for")
    ignored: list[dict[str, Any]] = [
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
        {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "Hm"}},
        {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "x"}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ""}},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": None}},
        {"type": "something_new", "payload": [1, 2]},
        {"type": "message_delta", "delta": {"stop_reason": None}},  # no usage yet
    ]
    assert [wire.anthropic_feed(tally, e) for e in ignored] == [""] * len(ignored)
    assert (tally.model, tally.deltas, tally.finished) == ("asked-for", 0, False)
    assert (tally.input_tokens, tally.output_tokens, tally.finish_reason) == (None, None, None)


def test_anthropic_message_delta_may_restate_input_tokens() -> None:
    tally = wire.StreamTally()
    for event in ANTHROPIC_TEXT_STREAM[:-2]:
        wire.anthropic_feed(tally, event)
    late = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 30, "output_tokens": 2},
    }
    wire.anthropic_feed(tally, late)
    wire.anthropic_feed(tally, {"type": "message_stop"})
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(30, 2), finish_reason="stop", model="claude-haiku-4-5"
    )


@pytest.mark.parametrize(
    "event",
    [
        None,
        "message_stop",
        [{"type": "message_stop"}],
        {"type": "message_start"},
        {"type": "message_start", "message": {"model": 4, "usage": {"input_tokens": 1}}},
        {"type": "message_start", "message": {"model": "c", "usage": {"input_tokens": "1"}}},
        {"type": "content_block_delta", "index": 0},
        {"type": "content_block_delta", "delta": {"type": "text_delta", "text": ["Hi"]}},
        {"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": 1}},
        {"type": "message_delta", "delta": "end_turn", "usage": {"output_tokens": 3}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": [3]},
    ],
)
def test_anthropic_feed_rejects_malformed_events(event: object) -> None:
    with pytest.raises(MalformedResponse):
        wire.anthropic_feed(wire.StreamTally(), event)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("stop", "stop"),
        ("end_turn", "stop"),
        ("tool_use", "stop"),
        ("tool_calls", "stop"),
        ("stop_sequence", "stop"),
        ("length", "length"),
        ("max_tokens", "length"),
        ("content_filter", "content_filter"),
        ("refusal", "content_filter"),
        (None, "stop"),
        ("something_new", "something_new"),
    ],
)
def test_normalize_finish(reason: str | None, expected: str) -> None:
    assert wire.normalize_finish(reason) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412480.0  # 07:28:00 GMT that day
    assert wire.retry_after_seconds(headers, now=now) == expected


@pytest.mark.parametrize(
    ("status", "expected", "transient"),
    [
        (400, BadRequest, False),
        (401, AuthenticationFailed, False),
        (403, AuthenticationFailed, False),
        (404, BadRequest, False),
        (422, BadRequest, False),
        (429, RateLimited, True),
        (500, UpstreamUnavailable, True),
        (502, UpstreamUnavailable, True),
        (529, UpstreamUnavailable, True),
        (504, UpstreamTimeout, True),
    ],
)
def test_error_for_status(status: int, expected: type[ProviderError], transient: bool) -> None:
    error = wire.error_for_status(status, "boom", provider="p", retry_after_s=3.0)
    assert type(error) is expected
    assert (error.status, error.retry_after_s, error.provider) == (status, 3.0, "p")
    assert error.transient is transient


def test_status_of_anthropic_error_bodies() -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert wire.status_of_anthropic_error(overloaded) == 529
    assert wire.status_of_anthropic_error({"type": "rate_limit_error"}) == 429
    assert wire.status_of_anthropic_error("nope") is None
