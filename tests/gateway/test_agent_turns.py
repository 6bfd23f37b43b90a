"""The agent in a session's turns, on the whole gateway (real uvicorn, real Postgres, the
simulated upstream over HTTP): the model/tool loop with its events, proposals written only once
accepted (over the socket, once), memories in the next turn's context, the round bound, the
guardrails (personal data masked upstream; a safety answer with no model call, kept and never
assessed), and sessions without tools unchanged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from db.focuses import active_focuses
from gateway.server import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.gateway.conftest import pool_of
from tests.gateway.wsclient import Client, ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]


async def agent_session(client: Client) -> None:
    await client.until("session.created")
    await client.send(type="session.update", session={"tools": True})
    updated = (await client.until("session.updated"))[-1]
    assert updated["session"]["tools"] is True


async def turn(client: Client, text: str) -> list[dict[str, Any]]:
    await client.send(type="input_text", text=text)
    return await client.until("response.completed", "response.failed")


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


async def test_a_tool_turn_streams_its_calls_and_answers_from_the_result(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("agent-ann")) as ann:
        await agent_session(ann)
        events = await turn(ann, "How is my progress this week?")
    kinds = [e["type"] for e in events]
    assert kinds.index("response.started") < kinds.index("response.tool_call")
    assert kinds.index("response.tool_call") < kinds.index("response.tool_result")
    assert kinds.index("response.tool_result") < kinds.index("response.delta")
    [call] = of_type(events, "response.tool_call")
    [result] = of_type(events, "response.tool_result")
    assert call["name"] == "get_progress" and result["call_id"] == call["call_id"]
    assert result["ok"] is True and result["summary"]
    done = events[-1]
    assert done["type"] == "response.completed" and done["finish_reason"] == "stop"
    assert done["text"] and done["stored"] == "db"
    assert done["timings"]["first_event_ms"] <= done["timings"]["ttft_ms"]
    # Two model calls, both charged: the second was given the tool's result.
    calls = list(fast_sim.state.received)[-2:]
    assert calls[0]["tools"] and calls[1]["tool_result"] is not None
    assert done["usage"]["input_tokens"] > 0 and done["usage"]["output_tokens"] > 0


async def test_a_proposed_focus_change_is_written_only_once_accepted(
    stack: RunningGateway, token: Token
) -> None:
    pool = pool_of(stack)
    async with ws_client(stack.ws_url, token("agent-bo")) as bo:
        await agent_session(bo)
        events = await turn(bo, "Please change my focus to breathing and pacing.")
        [proposed] = of_type(events, "change.proposed")
        change = proposed["change"]
        assert change["kind"] == "focus_change" and change["status"] == "pending"
        assert await active_focuses(pool, "agent-bo") == []  # nothing written yet
        await bo.send(type="change.accept", change_id=change["id"])
        applied = (await bo.until("change.applied"))[-1]["change"]
        assert applied["id"] == change["id"] and applied["status"] == "applied"
        chosen = [f.id for f in await active_focuses(pool, "agent-bo")]
        assert chosen == change["payload"]["focus_ids"]
        # Accepting again applies nothing twice: a clear error, the connection kept.
        await bo.send(type="change.accept", change_id=change["id"])
        refused = (await bo.until("error"))[-1]
        assert refused["code"] == "change_already_decided"
        await bo.send(type="change.reject", change_id="no-such-change")
        assert (await bo.until("error"))[-1]["code"] == "change_not_found"
        await bo.send(type="ping")
        await bo.until("pong")


async def test_an_accepted_memory_joins_the_next_turns_context(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("agent-cy")) as cy:
        await agent_session(cy)
        events = await turn(cy, "Remember that I practise the cello in the mornings.")
        [proposed] = of_type(events, "change.proposed")
        assert proposed["change"]["kind"] == "memory"
        await turn(cy, "Hello again, coach.")
        assert "BEGIN MEMORIES" not in fast_sim.state.received[-1]["prompt"]
        await cy.send(type="change.accept", change_id=proposed["change"]["id"])
        await cy.until("change.applied")
        await turn(cy, "What should I play on the cello today?")
    prompt = fast_sim.state.received[-1]["prompt"]
    memories = prompt[prompt.index("BEGIN MEMORIES") : prompt.index("END MEMORIES")]
    assert '["I practise the cello in the mornings"]' in memories
    headers = {"Authorization": f"Bearer {token('agent-cy')}"}
    async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
        memories = (await http.get("/v1/memories")).json()["memories"]
    assert [m["text"] for m in memories] == ["I practise the cello in the mornings"]


async def test_a_reject_over_http_reaches_the_socket(stack: RunningGateway, token: Token) -> None:
    async with ws_client(stack.ws_url, token("agent-di")) as di:
        await agent_session(di)
        events = await turn(di, "Don't forget: my recital is on Friday.")
        [proposed] = of_type(events, "change.proposed")
        headers = {"Authorization": f"Bearer {token('agent-di')}"}
        change_id = proposed["change"]["id"]
        async with httpx.AsyncClient(base_url=stack.url, headers=headers) as http:
            answer = await http.post(f"/v1/changes/{change_id}/reject")
        assert answer.status_code == 200 and answer.json()["change"]["status"] == "rejected"
        pushed = (await di.until("change.rejected"))[-1]["change"]
    assert pushed["id"] == change_id


async def test_the_last_round_may_call_no_tool(
    fast_sim: Any, database_dsn: str, tmp_path: Path, token: Token
) -> None:
    settings = make_settings(
        fast_sim.url,
        tmp_path,
        persistence=True,
        database_url=database_dsn,
        agent={"max_tool_rounds": 0},
    )
    async with (
        running_gateway(settings) as running,
        ws_client(running.ws_url, token("agent-ed")) as ed,
    ):
        await agent_session(ed)
        events = await turn(ed, "How is my progress this week?")
    assert of_type(events, "response.tool_call") == []
    assert events[-1]["finish_reason"] == "stop" and events[-1]["text"]
    # The tools stay declared (a conversation with tool calls needs them), none may be called.
    sent = fast_sim.state.received[-1]
    assert sent["tools"] and sent["tool_choice"] == "none"


async def test_personal_data_is_masked_upstream_and_kept_for_the_user(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    text = "Email my teacher at jo.smith@example.com or call 415-555-0123 about 3 sets of 10."
    async with ws_client(stack.ws_url, token("agent-fay")) as fay:
        await fay.until("session.created")
        events = await turn(fay, text)
        await turn(fay, "And what next?")  # the history goes upstream masked too
    assert events[-1]["type"] == "response.completed"
    for sent in list(fast_sim.state.received)[-2:]:
        assert "jo.smith@example.com" not in sent["prompt"]
        assert "415-555-0123" not in sent["prompt"]
        assert "[email]" in sent["prompt"] and "[phone]" in sent["prompt"]
        assert "3 sets of 10" in sent["prompt"]
    stored = await pool_of(stack).fetchval(
        "SELECT user_text FROM interactions WHERE user_id = 'agent-fay' ORDER BY id LIMIT 1"
    )
    assert stored == text  # the user's own record keeps what they wrote


@pytest.mark.parametrize(
    ("message", "flag", "words"),
    [
        ("My left knee hurts when I squat below parallel.", "injury", "see a doctor"),
        ("I want to hurt myself tonight.", "self_harm", "emergency"),
    ],
)
async def test_a_safety_message_gets_the_safety_answer_and_no_model_call(
    fast_sim: Any, stack: RunningGateway, token: Token, message: str, flag: str, words: str
) -> None:
    user = f"agent-safe-{flag}"
    before = len(fast_sim.state.received)
    async with ws_client(stack.ws_url, token(user)) as client:
        await agent_session(client)
        events = await turn(client, message)
    started = of_type(events, "response.started")[0]
    done = events[-1]
    assert (started["provider"], started["model"]) == ("guardrail", "safety")
    assert done["type"] == "response.completed" and done["finish_reason"] == "safety"
    assert words in done["text"].lower() and done["stored"] == "db"
    assert len(fast_sim.state.received) == before  # nothing went upstream
    row = await pool_of(stack).fetchrow(
        "SELECT i.safety_flag, (SELECT count(*) FROM assessment_jobs j"
        "  WHERE j.interaction_id = i.id) AS jobs FROM interactions i WHERE i.user_id = $1",
        user,
    )
    assert row is not None and row["safety_flag"] == flag and row["jobs"] == 0


async def test_a_session_without_tools_offers_none(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with ws_client(stack.ws_url, token("agent-gus")) as gus:
        await gus.until("session.created")
        events = await turn(gus, "How is my progress this week?")
    assert of_type(events, "response.tool_call") == []
    assert fast_sim.state.received[-1]["tools"] == []
