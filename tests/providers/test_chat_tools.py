"""The conformance suite's tool round trip: every chat adapter, over real HTTP against the sim."""

from __future__ import annotations

import json

import pytest

from providers.chat import ChatChunk, ChatRequest, Message, ToolCall, ToolSpec
from providers.errors import MalformedResponse, StreamInterrupted
from providers.sim import RunningSim, schema_errors
from tests.providers.conftest import MakeProvider
from tests.providers.test_chat_conformance import (
    Replay,
    anthropic_sse,
    collect,
    openai_sse,
    read_until_error,
)

# The replay fixtures, re-exported (`x as x`) so that pytest finds them here too.
from tests.providers.test_chat_conformance import replay as replay
from tests.providers.test_chat_conformance import replayed as replayed
from tests.providers.test_wire_tools import ANTHROPIC_TOOL_USE_STREAM, OPENAI_TOOL_STREAM

_OBJECT = {"type": "object", "additionalProperties": False}
TOOLS = (
    ToolSpec(
        "get_progress",
        "The user's practice progress over the last days.",
        {
            **_OBJECT,
            "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 90}},
            "required": ["days"],
        },
    ),
    ToolSpec(
        "search_drills",
        "Search the drill catalog and the coaching notes.",
        {
            **_OBJECT,
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            "required": ["query"],
        },
    ),
    ToolSpec(
        "remember",
        "Propose to remember a fact about the user.",
        {**_OBJECT, "properties": {"content": {"type": "string"}}, "required": ["content"]},
    ),
)
SYSTEM = Message("system", "You are a patient singing coach.")
RESULT = '{"sessions_this_month": 12, "streak_days": 5, "best_focus": "breath-support"}'


def ask(text: str, **kw: object) -> ChatRequest:
    messages = (SYSTEM, Message("user", text))
    return ChatRequest(model="gpt-4o-mini", messages=messages, **{"tools": TOOLS, **kw})  # type: ignore[arg-type]


def spec(name: str) -> ToolSpec:
    return next(tool for tool in TOOLS if tool.name == name)


async def call_of(make_provider: MakeProvider, req: ChatRequest) -> tuple[ToolCall, ChatChunk]:
    *deltas, final = await collect(make_provider(), req)
    assert "".join(c.text for c in deltas) == ""
    assert all(not c.tool_calls for c in deltas)
    assert final.finish_reason == "tool_calls"
    (call,) = final.tool_calls
    return call, final


async def test_a_tool_round_trip(make_provider: MakeProvider) -> None:
    """Asked for the user's data, the model calls the fitting tool; given its result, it answers
    in text that uses it."""
    req = ask("How is my progress this month?")
    call, final = await call_of(make_provider, req)
    assert call.name == "get_progress" and call.id
    assert schema_errors(spec("get_progress").parameters, json.loads(call.arguments)) == []
    assert final.usage is not None and final.usage.output_tokens > 0
    answer = ChatRequest(
        model=req.model,
        messages=(
            *req.messages,
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", RESULT, tool_call_id=call.id),
        ),
        tools=TOOLS,
    )
    *deltas, done = await collect(make_provider(), answer)
    text = "".join(c.text for c in deltas)
    assert done.finish_reason == "stop" and done.tool_calls == ()
    assert "12" in text and "breath-support" in text


@pytest.mark.parametrize(
    ("text", "tool", "field", "words"),
    [
        ("Find me a drill for breathing", "search_drills", "query", {"drill", "breathing"}),
        ("Please remember that I practice at night.", "remember", "content", {"night"}),
    ],
)
async def test_arguments_come_from_the_message(
    make_provider: MakeProvider, text: str, tool: str, field: str, words: set[str]
) -> None:
    call, _ = await call_of(make_provider, ask(text))
    arguments = json.loads(call.arguments)
    assert call.name == tool
    assert schema_errors(spec(tool).parameters, arguments) == []
    assert words <= set(arguments[field].lower().split())


async def test_a_forced_tool_is_called(make_provider: MakeProvider) -> None:
    call, _ = await call_of(
        make_provider, ask("Warm up tips?", tool_choice={"name": "search_drills"})
    )
    assert call.name == "search_drills"


@pytest.mark.parametrize("kw", [{"tool_choice": "none"}, {"tools": ()}])
async def test_no_call_without_tools_or_with_choice_none(
    make_provider: MakeProvider, kw: dict[str, object]
) -> None:
    *deltas, final = await collect(make_provider(), ask("How is my progress this month?", **kw))
    assert final.finish_reason == "stop" and final.tool_calls == ()
    assert len("".join(c.text for c in deltas).split()) > 5


async def test_a_coaching_question_is_answered_without_a_tool(make_provider: MakeProvider) -> None:
    *_, final = await collect(make_provider(), ask("How do I relax my jaw when I sing?"))
    assert final.finish_reason == "stop"


async def test_malformed_arguments_are_passed_along_as_text(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(invalid_json_rate=1.0)
    call, _ = await call_of(make_provider, ask("How is my progress this month?"))
    assert call.name == "get_progress"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call.arguments)


async def test_a_stream_cut_mid_call_is_interrupted(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(drop_after=1)
    _, raised = await read_until_error(make_provider(), ask("How is my progress this month?"))
    assert isinstance(raised, StreamInterrupted)


# -- recorded streams, replayed over real HTTP ------------------------------------------------


async def test_recorded_openai_parallel_calls(replay: Replay, replayed: MakeProvider) -> None:
    replay.body = openai_sse(*OPENAI_TOOL_STREAM)
    *_, final = await collect(replayed("openai"), ask("progress and a drill?"))
    assert final.finish_reason == "tool_calls"
    assert [c.arguments for c in final.tool_calls] == ['{"days": 30}', '{"query": "breathing"}']


async def test_recorded_anthropic_tool_use(replay: Replay, replayed: MakeProvider) -> None:
    replay.body = anthropic_sse(*[(e["type"], e) for e in ANTHROPIC_TOOL_USE_STREAM])
    chunks = await collect(replayed("anthropic"), ask("progress?"))
    assert [c.text for c in chunks[:-1]] == ["Let me check."]
    assert chunks[-1].tool_calls == (ToolCall("toolu_01A", "get_progress", '{"days": 7}'),)


async def test_recorded_anthropic_stream_ending_mid_call_is_malformed(
    replay: Replay, replayed: MakeProvider
) -> None:
    stop = {"type": "content_block_stop", "index": 1}
    unfinished = [e for e in ANTHROPIC_TOOL_USE_STREAM if e != stop]
    replay.body = anthropic_sse(*[(e["type"], e) for e in unfinished])
    text, raised = await read_until_error(replayed("anthropic"), ask("progress?"))
    assert text == "Let me check."
    assert isinstance(raised, MalformedResponse)
    assert raised.provider == "replayed" and "tool call 1" in raised.message


async def test_a_json_schema_answer_beside_tools_stays_text(make_provider: MakeProvider) -> None:
    """On Anthropic the schema is one more (forced) tool: its input is still the answer's text,
    with finish "stop", not a tool call."""
    schema = {"type": "object", "properties": {"tip": {"type": "string"}}, "required": ["tip"]}
    req = ask("One tip for my breathing, please.", json_schema=schema, schema_name="tip_answer")
    *deltas, final = await collect(make_provider(), req)
    assert (final.finish_reason, final.tool_calls) == ("stop", ())
    assert schema_errors(schema, json.loads("".join(c.text for c in deltas))) == []
