"""The session store and the turn store on a real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import fields, replace

import pytest

from db.interactions import NewInteraction, list_interactions
from gateway.persistence import Persistence, open_persistence
from gateway.settings import Settings
from providers.chat import Message
from streams.records import TurnRecord
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]


def record(user_id: str, session_id: str, text: str, reply: str = "Try pausing.") -> TurnRecord:
    request_id = f"req-{uuid.uuid4().hex[:10]}"
    return TurnRecord(
        turn_id="t1",
        request_id=request_id,
        user_id=user_id,
        session_id=session_id,
        channel="sse",
        user_text=text,
        reply_text=reply,
        status="completed",
        finish_reason="stop",
        provider="primary",
        model="gpt-4o-mini",
        input_tokens=10,
        output_tokens=5,
        ttft_ms=50.0,
        upstream_ttft_ms=40.0,
        total_ms=200.0,
        cost_usd=0.002,
    )


@pytest.fixture(scope="module")
async def persistence(
    database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Persistence]:
    settings = Settings(database_url=database_dsn, data_dir=tmp_path_factory.mktemp("d"))
    p = await open_persistence(settings)  # no router: jobs wait in the table
    yield p
    await p.aclose()


async def test_session_store_resumes_with_history(persistence: Persistence) -> None:
    first = await persistence.sessions.open("erin", None)
    assert not first.resumed and first.history == ()
    await persistence.turns.put(record("erin", first.session_id, "Hello coach, hi"))
    await persistence.turns.put(record("erin", first.session_id, "Pacing tips?", "Slow."))
    again = await persistence.sessions.open("erin", first.session_id)
    assert again.resumed and again.session_id == first.session_id
    assert again.history == (
        Message("user", "Hello coach, hi"),
        Message("assistant", "Try pausing."),
        Message("user", "Pacing tips?"),
        Message("assistant", "Slow."),
    )
    joined = await persistence.sessions.open("erin", None)
    assert joined.session_id == first.session_id
    with pytest.raises(LookupError):
        await persistence.sessions.open("frank", first.session_id)
    await persistence.sessions.touch(first.session_id)


async def test_store_writes_interaction_run_and_job_together(persistence: Persistence) -> None:
    info = await persistence.sessions.open("gina", None)
    rec = record("gina", info.session_id, "How should I open my talk?")
    await persistence.turns.put(rec)
    row = await persistence.pool.fetchrow(
        "SELECT (SELECT count(*) FROM interactions WHERE request_id = $1) AS i,"
        " (SELECT count(*) FROM prompt_runs WHERE request_id = $1 AND purpose = 'chat'"
        "   AND cost_usd = 0.002) AS p,"
        " (SELECT count(*) FROM assessment_jobs j JOIN interactions i ON i.id = j.interaction_id"
        "   WHERE i.request_id = $1 AND j.status = 'pending') AS j",
        rec.request_id,
    )
    assert dict(row) == {"i": 1, "p": 1, "j": 1}


async def test_a_turn_the_database_refuses_is_not_stored_nor_spooled(
    persistence: Persistence,
) -> None:
    rec = record("hank", "no-such-session", "hello there friend")  # foreign key violation
    assert await persistence.turns.put(rec) is None  # must not raise; the client is told
    assert persistence.turns.status().spooled == 0  # a refused turn is no outage
    assert (
        await persistence.pool.fetchval(
            "SELECT count(*) FROM prompt_runs WHERE request_id = $1", rec.request_id
        )
        == 0
    )
    await persistence.ping()


async def test_a_stored_turn_reads_back_with_every_column_it_wrote(
    persistence: Persistence,
) -> None:
    info = await persistence.sessions.open("ines", None)
    rec = replace(
        record("ines", info.session_id, "Was that too fast?"),
        status="failed",
        error_code="upstream_timeout",
        fallbacks=[{"target": "primary", "error": "upstream_timeout"}],
        focus_ids=("pacing", "clarity"),
        audio_in_ms=1800,
        first_audio_ms=310.5,
    )
    assert await persistence.turns.put(rec) == "db"
    (row,) = await list_interactions(persistence.pool, info.session_id, limit=5)
    for column in (f.name for f in fields(NewInteraction)):
        assert getattr(row, column) == getattr(rec, column), column
    run = await persistence.pool.fetchrow(
        "SELECT status, latency_ms, ttft_ms, cost_usd, user_id FROM prompt_runs"
        " WHERE request_id = $1",
        rec.request_id,
    )
    assert dict(run) == {
        "status": "failed:upstream_timeout",
        "latency_ms": rec.total_ms,
        "ttft_ms": rec.upstream_ttft_ms,
        "cost_usd": rec.cost_usd,
        "user_id": "ines",
    }
