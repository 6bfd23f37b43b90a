"""A turn offered tools, against the sim over real HTTP through the router: the model's calls
come out as `response.tool_call` events and the turn ends with finish_reason "tool_calls"."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator

import pytest

from providers.chat import ChatProvider, Message, ToolCall, ToolSpec
from providers.factory import build_chat_provider
from providers.routing import Router, Target
from providers.sim import RunningSim, SimKnobs, running_sim
from streams.events import (
    ResponseCompleted,
    ResponseDelta,
    ResponseStarted,
    ResponseToolCall,
    ServerEvent,
)
from streams.records import TurnRecord
from streams.session import LiveSession
from streams.turn import TurnEngine, TurnInput
from tests.providers.conftest import CHAT_ADAPTERS, provider_cfg

PROGRESS = ToolSpec(
    "get_progress",
    "The user's practice progress.",
    {"type": "object", "properties": {}, "additionalProperties": False},
)
DRILLS = ToolSpec(
    "search_drills",
    "Search the drill catalog.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)
TOOLS = (PROGRESS, DRILLS)


class Recorder:
    def __init__(self) -> None:
        self.records: list[TurnRecord] = []
        self.events: list[ServerEvent] = []

    async def turn_finished(self, record: TurnRecord) -> None:
        self.records.append(record)

    async def emit(self, event: ServerEvent) -> None:
        self.events.append(event)


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[RunningSim]:
    async with running_sim(SimKnobs(ttft_ms=1, tokens_per_s=0)) as server:
        yield server


@pytest.fixture(params=CHAT_ADAPTERS, ids=[f"{k}-{c}" for k, c in CHAT_ADAPTERS])
async def engine(
    request: pytest.FixtureRequest, sim: RunningSim
) -> AsyncIterator[tuple[TurnEngine, Recorder]]:
    kind, client = request.param
    provider: ChatProvider = build_chat_provider(
        "p", provider_cfg(kind, sim.url, client=client), sim_url=sim.url
    )
    recorder = Recorder()
    router = Router({"p": provider}, {"chat": [Target("p", "gpt-4o-mini")]})
    yield TurnEngine(router, [recorder]), recorder
    await provider.aclose()


def _live() -> LiveSession:
    return LiveSession("s1", "u1", deque(maxlen=8))


async def test_a_tool_call_ends_the_turn_with_its_events(
    engine: tuple[TurnEngine, Recorder],
) -> None:
    turns, recorder = engine
    turn, live = TurnInput("t1", "How is my progress this week?", "r1", "ws", tools=TOOLS), _live()
    await turns.reply(live, turn, recorder.emit)
    assert not live.history  # the round is not an exchange until its answer comes
    started, call, completed = recorder.events
    assert isinstance(started, ResponseStarted)
    assert isinstance(call, ResponseToolCall)
    assert (call.turn_id, call.name, json.loads(call.arguments)) == ("t1", "get_progress", {})
    assert call.call_id
    assert isinstance(completed, ResponseCompleted)
    assert (completed.finish_reason, completed.text) == ("tool_calls", "")
    assert recorder.records[0].finish_reason == "tool_calls"
    assert completed.usage["output_tokens"] > 0


async def test_the_next_round_sends_the_calls_and_results_and_gets_text(
    engine: tuple[TurnEngine, Recorder],
) -> None:
    turns, recorder = engine
    call = ToolCall("call_1", "get_progress", "{}")
    turn = TurnInput(
        "t2",
        "How is my progress this week?",
        "r2",
        "ws",
        tools=TOOLS,
        tail=(
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", '{"sessions_last_7_days": 4, "streak_days": 3}', tool_call_id="call_1"),
        ),
    )
    await turns.reply(_live(), turn, recorder.emit)
    assert not any(isinstance(e, ResponseToolCall) for e in recorder.events)
    completed = recorder.events[-1]
    assert isinstance(completed, ResponseCompleted)
    assert completed.finish_reason == "stop"
    assert "sessions last 7 days 4" in completed.text
    deltas = "".join(e.text for e in recorder.events if isinstance(e, ResponseDelta))
    assert deltas == completed.text


async def test_without_tools_the_same_question_gets_text(
    engine: tuple[TurnEngine, Recorder],
) -> None:
    turns, recorder = engine
    await turns.reply(
        _live(), TurnInput("t3", "How is my progress this week?", "r3", "ws"), recorder.emit
    )
    completed = recorder.events[-1]
    assert isinstance(completed, ResponseCompleted)
    assert completed.finish_reason == "stop" and completed.text
    assert not any(isinstance(e, ResponseToolCall) for e in recorder.events)


async def test_tool_choice_reaches_the_model(engine: tuple[TurnEngine, Recorder]) -> None:
    turns, recorder = engine
    turn = TurnInput(
        "t4", "Any tips?", "r4", "ws", tools=TOOLS, tool_choice={"name": "search_drills"}
    )
    await turns.reply(_live(), turn, recorder.emit)
    calls = [e for e in recorder.events if isinstance(e, ResponseToolCall)]
    assert [c.name for c in calls] == ["search_drills"]
