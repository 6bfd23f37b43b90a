"""The turn engine's model/tool loop against the sim over real HTTP through the router, with a
small agent of the test's own (`streams.agent.TurnAgent`): tools run and their results go back,
malformed arguments are reported to the model and the turn ends cleanly, a model that will not
stop calling tools is stopped at the round bound with finish_reason `tool_limit`, and a safety
answer never reaches the model."""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Message, ToolCall, ToolSpec
from providers.factory import build_chat_provider
from providers.routing import Router, Target
from providers.sim import RunningSim, SimKnobs, running_sim
from streams.agent import Screened
from streams.events import (
    ResponseCompleted,
    ResponseStarted,
    ResponseToolCall,
    ResponseToolResult,
    ServerEvent,
)
from streams.session import LiveSession
from streams.turn import TOOL_LIMIT, TurnEngine, TurnInput
from tests.providers.conftest import provider_cfg

PROGRESS = ToolSpec(
    "get_progress",
    "The user's practice progress.",
    {"type": "object", "properties": {}, "additionalProperties": False},
)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    content: str
    summary: str
    change: dict[str, object] | None = None


class TableAgent:
    """Offers `get_progress`; answers it from a table, and refuses arguments that are not JSON."""

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []

    def screen(self, text: str) -> Screened:
        if "knee hurts" in text:
            return Screened(text, "Please stop and see a doctor.", "injury")
        return Screened(text.replace("555-0100", "[phone]"))

    async def context(self, live: LiveSession, text: str) -> tuple[Message, ...]:
        return ()

    def tools(self, live: LiveSession) -> tuple[ToolSpec, ...]:
        return (PROGRESS,)

    async def run_tool(self, live: LiveSession, call: ToolCall) -> Outcome:
        self.calls.append(call)
        try:
            json.loads(call.arguments)
        except ValueError:
            return Outcome(False, '{"error": "arguments are not JSON"}', "bad arguments")
        return Outcome(True, '{"sessions_last_7_days": 4, "streak_days": 3}', "4 sessions")


class AlwaysCalls(ChatProvider):
    """A model that calls a tool on every call, even when told not to (`tool_choice: "none"`):
    the sim, always asked for one."""

    def __init__(self, inner: ChatProvider) -> None:
        self.name, self.kind, self._inner = inner.name, inner.kind, inner

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        return self._inner.stream(dataclasses.replace(request, tool_choice="required"))

    async def aclose(self) -> None:
        await self._inner.aclose()


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[RunningSim]:
    async with running_sim(SimKnobs(ttft_ms=1, tokens_per_s=0)) as server:
        yield server


async def run_turn(
    sim: RunningSim, text: str, *, insistent: bool = False, rounds: int = 2
) -> tuple[list[ServerEvent], TableAgent, LiveSession]:
    provider: ChatProvider = build_chat_provider(
        "p", provider_cfg("openai", sim.url, client="native"), sim_url=sim.url
    )
    if insistent:
        provider = AlwaysCalls(provider)
    router = Router({"p": provider}, {"chat": [Target("p", "gpt-4o-mini")]})
    agent = TableAgent()
    engine = TurnEngine(router, agent=agent, max_tool_rounds=rounds)
    events: list[ServerEvent] = []

    async def emit(event: ServerEvent) -> None:
        events.append(event)

    live = LiveSession("s1", "u1", deque(maxlen=8))
    try:
        await engine.reply(live, TurnInput("t1", text, "r1", "ws"), emit)
    finally:
        await provider.aclose()
    return events, agent, live


async def test_a_tool_round_then_an_answer_from_its_result(sim: RunningSim) -> None:
    events, _, live = await run_turn(sim, "How is my progress this week?")
    [call] = [e for e in events if isinstance(e, ResponseToolCall)]
    [result] = [e for e in events if isinstance(e, ResponseToolResult)]
    assert (call.name, result.call_id, result.ok, result.summary) == (
        "get_progress",
        call.call_id,
        True,
        "4 sessions",
    )
    done = events[-1]
    assert isinstance(done, ResponseCompleted) and done.finish_reason == "stop"
    assert "sessions last 7 days 4" in done.text
    assert [m.role for m in live.history] == ["user", "assistant"]  # one exchange, no tool noise
    assert sum(isinstance(e, ResponseStarted) for e in events) == 1


async def test_malformed_arguments_are_reported_and_the_turn_ends_cleanly(
    sim: RunningSim,
) -> None:
    await sim.set_knobs(invalid_json_rate=1.0)
    try:
        events, agent, _ = await run_turn(sim, "How is my progress this week?")
    finally:
        await sim.set_knobs(invalid_json_rate=0.0)
    assert agent.calls, "the model called the tool"
    with pytest.raises(ValueError):
        json.loads(agent.calls[0].arguments)
    results = [e for e in events if isinstance(e, ResponseToolResult)]
    assert results and results[0].ok is False
    done = events[-1]
    assert isinstance(done, ResponseCompleted) and done.finish_reason in {"stop", TOOL_LIMIT}


async def test_a_model_that_never_stops_calling_is_stopped_at_the_bound(
    sim: RunningSim,
) -> None:
    events, agent, live = await run_turn(
        sim, "How is my progress this week?", insistent=True, rounds=2
    )
    done = events[-1]
    assert isinstance(done, ResponseCompleted) and done.finish_reason == TOOL_LIMIT
    assert len(agent.calls) == 2  # the calls of the last round are not run
    assert len([e for e in events if isinstance(e, ResponseToolCall)]) == 3
    assert live.history  # the turn is an exchange: it ended


async def test_a_safety_answer_never_reaches_the_model(sim: RunningSim) -> None:
    sim.reset_stats()
    events, agent, _ = await run_turn(sim, "My knee hurts when I squat.")
    done = events[-1]
    assert isinstance(done, ResponseCompleted)
    assert (done.finish_reason, done.text, done.provider) == (
        "safety",
        "Please stop and see a doctor.",
        "guardrail",
    )
    assert sim.stats()["requests"] == 0 and agent.calls == []
