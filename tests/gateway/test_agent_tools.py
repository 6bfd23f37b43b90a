"""The agent's server tools (`run_tool`) on a real Postgres, with the simulated upstream over
real HTTP for the one tool that makes a model call: each reads only the caller's data, the
write tools only propose, and a bad call comes back as an error the model can read (never an
exception), bounded in size and in time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from db.focuses import active_focuses, set_active_focuses
from db.memories import list_memories
from db.pool import Pool
from db.sessions import open_session
from gateway.agent_tools import ToolContext, ToolOutcome, run_tool
from gateway.auth import Authenticator
from gateway.drills import load_catalog
from gateway.knowledge import load_catalog_knowledge
from gateway.persistence import Persistence, open_persistence
from gateway.quotas import Quotas
from gateway.runtime import Gateway
from gateway.settings import AssessSettings, Settings
from gateway.spool import record_from_json, record_to_json
from gateway.tool_specs import READ_TOOLS, TOOL_SPECS
from gateway.upstreams import build_router
from providers.chat import ToolCall
from streams.records import TurnRecord
from streams.session import MemorySessionStore, SessionRegistry
from streams.turn import TurnEngine
from tests.conftest import TEST_SECRET
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

ANN, BOB = "tools-ann", "tools-bob"
BOB_SECRET = "bob-only-marker"


@pytest.fixture(scope="module")
async def persistence(
    database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Persistence]:
    settings = Settings(
        database_url=database_dsn,
        data_dir=tmp_path_factory.mktemp("tools"),
        jwt_secret=TEST_SECRET,
        assess=AssessSettings(enabled=False),
    )
    p = await open_persistence(settings)
    yield p
    await p.aclose()


async def make_gateway(
    stack: AsyncExitStack, sim_url: str, persistence: Persistence | None, **overrides: Any
) -> Gateway:
    """A gateway of real parts: the sim behind the router, in-memory quotas, `persistence`."""
    settings = Settings(
        jwt_secret=TEST_SECRET, sim_url=sim_url, persistence=False, **overrides
    ).with_default_upstreams()
    router = build_router(settings)
    stack.push_async_callback(router.aclose)
    quotas = await Quotas.open(settings.quotas, None)
    stack.push_async_callback(quotas.aclose)
    return Gateway(
        settings=settings,
        auth=Authenticator(secret=TEST_SECRET),
        router=router,
        quotas=quotas,
        sessions=MemorySessionStore(),
        registry=SessionRegistry(settings.history_turns),
        engine=TurnEngine(router, []),
        persistence=persistence,
    )


@pytest.fixture
async def gateway(fast_sim: Any, persistence: Persistence) -> AsyncIterator[Gateway]:
    async with AsyncExitStack() as stack:
        yield await make_gateway(stack, fast_sim.url, persistence)


@pytest.fixture(scope="module")
async def seeded(persistence: Persistence) -> dict[str, str]:
    """Ann and Bob, each with focuses, a session and an assessment; the session ids."""
    pool = persistence.pool
    await load_catalog_knowledge(pool, load_catalog(None))
    sessions = {}
    for user, focus, text in ((ANN, "pacing", "ann's"), (BOB, "clarity", BOB_SECRET)):
        await set_active_focuses(pool, user, [focus])
        session = (await open_session(pool, user, None, idle_s=600)).session.id
        await _assessment(pool, user, session, focus, text)
        sessions[user] = session
    return sessions


async def _assessment(pool: Pool, user: str, session: str, focus: str, explanation: str) -> None:
    job = await pool.fetchval(
        "INSERT INTO assessment_jobs (kind, user_id, session_id) VALUES"
        " ('session_summary', $1, $2) RETURNING id",
        user,
        session,
    )
    await pool.execute(
        "INSERT INTO assessments (job_id, user_id, session_id, focus_id, kind, category, score,"
        " explanation, rubric_version) VALUES ($1, $2, $3, $4, 'session_summary', 'progress',"
        " 6, $5, 'v1')",
        job,
        user,
        session,
        focus,
        explanation,
    )


async def call(
    gateway: Gateway, user: str, name: str, arguments: Any = None, **ctx: Any
) -> ToolOutcome:
    text = arguments if isinstance(arguments, str) else orjson.dumps(arguments or {}).decode()
    return await run_tool(ToolContext(gateway, user, **ctx), ToolCall("call-1", name, text))


def content(outcome: ToolOutcome) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(outcome.content)
    return data


async def test_read_tools_never_show_another_users_data(
    gateway: Gateway, seeded: dict[str, str]
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("get_progress", {}),
        ("list_sessions", {"limit": 20}),
        ("get_assessments", {"limit": 20}),
        ("get_assessments", {"session_id": seeded[BOB]}),  # Bob's session id, asked by Ann
        ("recommend_practice", {}),
    ]
    for name, arguments in calls:
        outcome = await call(gateway, ANN, name, arguments)
        assert outcome.ok, outcome.content
        for foreign in (BOB, seeded[BOB], BOB_SECRET):
            assert foreign not in outcome.content, (name, outcome.content)
    progress = content(await call(gateway, ANN, "get_progress"))
    assert progress["active_focus_ids"] == ["pacing"]
    [session] = content(await call(gateway, ANN, "list_sessions"))["sessions"]
    assert session["id"] == seeded[ANN]
    [mine] = content(await call(gateway, ANN, "get_assessments"))["assessments"]
    assert mine["session_id"] == seeded[ANN] and mine["focus_id"] == "pacing"
    assert content(await call(gateway, ANN, "get_assessments", {"session_id": seeded[BOB]})) == {
        "assessments": []
    }
    [bobs] = content(await call(gateway, BOB, "get_assessments"))["assessments"]
    assert BOB_SECRET in bobs["explanation"]


async def test_search_drills_answers_from_the_catalog(gateway: Gateway, seeded: Any) -> None:
    outcome = await call(gateway, ANN, "search_drills", {"query": "stop saying um"})
    results = content(outcome)["results"]
    assert outcome.ok and results[0]["id"] == "pause-for-um"
    assert all(r["kind"] == "note" or gateway.drills.get(r["id"]) for r in results)
    none = content(await call(gateway, ANN, "search_drills", {"query": "xylophone"}))
    assert none["results"] == [] and "hint" in none


async def test_recommend_practice_names_catalog_drills(gateway: Gateway, seeded: Any) -> None:
    outcome = await call(gateway, ANN, "recommend_practice")
    plan = content(outcome)
    assert outcome.ok and plan["focus_id"] == "pacing" and plan["drills"]
    assert all(gateway.drills.get(d["id"]) for d in plan["drills"])
    assert outcome.summary.startswith("Recommended")


async def test_write_tools_propose_and_write_nothing(
    gateway: Gateway, persistence: Persistence, seeded: dict[str, str]
) -> None:
    pool = persistence.pool
    focus = await call(
        gateway,
        ANN,
        "propose_focus_change",
        {"focus_ids": ["breathing", "structure"], "reason": "phrasing"},
        session_id=seeded[ANN],
    )
    memory = await call(gateway, ANN, "remember", {"text": "I sing in a choir"})
    for outcome in (focus, memory):
        assert outcome.ok and outcome.change is not None
        assert outcome.change["status"] == "pending"
        assert content(outcome)["change_id"] == outcome.change["id"]
    assert focus.change is not None and focus.change["payload"]["focus_ids"] == [
        "breathing",
        "structure",
    ]
    assert focus.change["payload"]["previous_focus_ids"] == ["pacing"]
    assert [f.id for f in await active_focuses(pool, ANN)] == ["pacing"]
    assert await list_memories(pool, ANN) == []
    stored = await pool.fetchval("SELECT session_id FROM changes WHERE id = $1", focus.change["id"])
    assert stored == seeded[ANN]


@pytest.mark.parametrize(
    ("name", "arguments", "error"),
    [
        ("get_progress", "{not json", "not valid JSON"),
        ("get_progress", "[1, 2]", "must be a JSON object"),
        ("list_sessions", {"limit": 0}, "limit: must be at least 1"),
        ("list_sessions", {"limit": "5"}, "limit: must be an integer"),
        ("list_sessions", {"limit": True}, "limit: must be an integer"),
        ("list_sessions", {"user_id": BOB}, "user_id: is not an argument"),
        ("search_drills", {}, "query: is required"),
        ("search_drills", {"query": "x", "focus_id": "juggling"}, "focus_id: must be one of"),
        ("propose_focus_change", {"focus_ids": ["pacing", "pacing"]}, "must not repeat"),
        ("propose_focus_change", {"focus_ids": []}, "at least 1 items"),
        ("remember", {"text": "x" * 501}, "at most 500 characters"),
        ("remember", {"text": "   "}, "remember refused: text must be 1-500"),
        ("delete_everything", {}, "unknown tool 'delete_everything'"),
    ],
)
async def test_a_bad_call_is_an_error_for_the_model(
    gateway: Gateway, seeded: Any, name: str, arguments: Any, error: str
) -> None:
    outcome = await call(gateway, ANN, name, arguments)
    assert not outcome.ok and outcome.change is None
    assert error in content(outcome)["error"]
    assert outcome.summary and len(outcome.summary) <= 120


async def test_a_slow_tool_is_cut_off_at_the_timeout(
    fast_sim: Any, persistence: Persistence, seeded: Any
) -> None:
    async with AsyncExitStack() as stack:
        gateway = await make_gateway(
            stack, fast_sim.url, persistence, agent={"tool_timeout_s": 0.3}
        )
        async with persistence.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
            outcome = await call(gateway, ANN, "list_sessions")
    assert not outcome.ok and "took too long" in content(outcome)["error"]


async def test_results_are_bounded_in_size(
    fast_sim: Any, persistence: Persistence, seeded: Any
) -> None:
    user = "tools-many"
    for _ in range(12):
        opened = await open_session(persistence.pool, user, None, idle_s=600)
        await persistence.pool.execute(
            "UPDATE sessions SET closed_at = now() WHERE id = $1", opened.session.id
        )
    async with AsyncExitStack() as stack:
        gateway = await make_gateway(
            stack, fast_sim.url, persistence, agent={"tool_output_bytes": 600}
        )
        outcome = await call(gateway, user, "list_sessions", {"limit": 20})
    data = content(outcome)
    assert outcome.ok and len(outcome.content.encode()) <= 600
    assert data["truncated"] is True and 0 < len(data["sessions"]) < 12


async def test_without_a_database_a_tool_says_so(fast_sim: Any) -> None:
    async with AsyncExitStack() as stack:
        gateway = await make_gateway(stack, fast_sim.url, None)
        outcome = await call(gateway, ANN, "get_progress")
    assert not outcome.ok and "without a database" in content(outcome)["error"]


async def test_each_call_is_a_span(gateway: Gateway, seeded: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    await call(gateway, ANN, "get_progress", tracer=tracer)
    await call(gateway, ANN, "nope", tracer=tracer)
    ok, unknown = exporter.get_finished_spans()
    assert ok.name == "tool get_progress" and unknown.name == "tool nope"
    assert ok.attributes is not None and ok.attributes["gen_ai.tool.name"] == "get_progress"
    assert ok.attributes["coach.tool.ok"] is True
    assert unknown.attributes is not None and unknown.attributes["coach.tool.ok"] is False


def test_the_specs_are_the_documented_tools() -> None:
    names = [s.name for s in TOOL_SPECS]
    assert names == [*READ_TOOLS, "propose_focus_change", "remember"]
    for spec in TOOL_SPECS:
        assert spec.parameters["type"] == "object"
        assert spec.parameters["additionalProperties"] is False


async def test_a_turn_answered_by_the_guardrails_is_marked(
    persistence: Persistence, seeded: dict[str, str]
) -> None:
    """`safety_flag` goes from the turn's record to its interaction, through the spool's
    serialisation too."""
    record = TurnRecord(
        turn_id="turn-safe",
        request_id="req-safe",
        user_id=ANN,
        session_id=seeded[ANN],
        channel="ws",
        user_text="my knee hurts when I squat",
        reply_text="Please stop and see a professional.",
        status="completed",
        finish_reason="safety",
        provider=None,
        model=None,
        input_tokens=0,
        output_tokens=0,
        ttft_ms=None,
        upstream_ttft_ms=None,
        total_ms=1.0,
        cost_usd=0.0,
        safety_flag="injury",
    )
    assert record_from_json(record_to_json(record)).safety_flag == "injury"
    assert await persistence.turns.put(record) == "db"
    flag = await persistence.pool.fetchval(
        "SELECT safety_flag FROM interactions WHERE request_id = 'req-safe'"
    )
    assert flag == "injury"
