"""REST over a real uvicorn on loopback, on a real Postgres: isolation, pagination, progress."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from db import sessions as sessions_db
from db.focuses import set_active_focuses
from gateway.auth import mint_token
from gateway.persistence import Persistence, open_persistence
from gateway.rest import rest_routes
from gateway.settings import Settings
from streams.records import TurnRecord
from tests.assess.fakes import FakeAssessProvider, fake_router
from tests.gateway.parts import parts_app, served
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

SECRET = "rest-test-secret-0123456789-abcdefghijklmnop"


def record(user_id: str, session_id: str, text: str) -> TurnRecord:
    request_id = f"req-{uuid.uuid4().hex[:10]}"
    return TurnRecord(
        turn_id=request_id,
        request_id=request_id,
        user_id=user_id,
        session_id=session_id,
        channel="ws",
        user_text=text,
        reply_text="Pause before the ask and slow the last sentence.",
        status="completed",
        finish_reason="stop",
        provider="primary",
        model="gpt-4o-mini",
        input_tokens=40,
        output_tokens=12,
        ttft_ms=80.0,
        upstream_ttft_ms=60.0,
        total_ms=400.0,
        cost_usd=0.0001,
        focus_ids=("pacing",),
    )


LONG = " ".join(["I practised my opening line about our hospital shift planner"] * 4)


@pytest.fixture(scope="module")
async def persistence(
    database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Persistence]:
    settings = Settings(
        database_url=database_dsn, data_dir=tmp_path_factory.mktemp("data"), jwt_secret=SECRET
    )
    p = await open_persistence(settings)
    await p.start_assessments(fake_router(FakeAssessProvider(score=5)))
    yield p
    await p.aclose()


@pytest.fixture(scope="module")
async def base_url(persistence: Persistence) -> AsyncIterator[str]:
    settings = Settings(jwt_secret=SECRET, persistence=False)
    async with (
        parts_app(rest_routes(), settings, persistence=persistence) as app,
        served(app) as url,
    ):
        yield url


def client(base_url: str, user: str | None) -> httpx.AsyncClient:
    headers = {} if user is None else {"Authorization": f"Bearer {mint_token(SECRET, user)}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)


async def alice_session(persistence: Persistence, turns: int = 3) -> str:
    info = await persistence.sessions.open("alice", None)
    for n in range(turns):
        await persistence.turns.put(record("alice", info.session_id, f"{LONG} {n}"))
    async with asyncio.timeout(15):
        while True:
            waiting = await persistence.pool.fetchval(
                "SELECT count(*) FROM assessment_jobs WHERE session_id = $1"
                " AND status IN ('pending', 'running')",
                info.session_id,
            )
            if not waiting:
                break
            await asyncio.sleep(0.05)
    return info.session_id


async def test_owner_reads_session_interactions_assessments(
    base_url: str, persistence: Persistence
) -> None:
    sid = await alice_session(persistence)
    async with client(base_url, "alice") as http:
        listed = (await http.get("/v1/sessions")).json()
        assert sid in [s["id"] for s in listed["data"]]
        detail = await http.get(f"/v1/sessions/{sid}")
        assert detail.status_code == 200 and detail.json()["interaction_count"] == 3
        turns = (await http.get(f"/v1/sessions/{sid}/interactions")).json()["data"]
        assert len(turns) == 3 and turns[0]["timings"]["ttft_ms"] == 80.0
        assessed = (await http.get(f"/v1/sessions/{sid}/assessments")).json()["data"]
        assert len(assessed) == 3 and {a["focus_id"] for a in assessed} == {"pacing"}
        progress = (await http.get("/v1/progress")).json()["data"]
        pacing = next(p for p in progress if p["focus_id"] == "pacing")
        assert pacing["level"] == 5 and pacing["band"] == "developing" and pacing["samples"] == 3


async def test_another_users_session_is_404(base_url: str, persistence: Persistence) -> None:
    sid = await alice_session(persistence, turns=1)
    async with client(base_url, "bob") as http:
        for path in ("", "/interactions", "/assessments"):
            response = await http.get(f"/v1/sessions/{sid}{path}")
            assert response.status_code == 404
            error = response.json()["error"]
            assert error["code"] == "session_not_found" and error["retryable"] is False
            assert "message" in error
        missing = await http.get(f"/v1/sessions/{uuid.uuid4()}")
        assert missing.status_code == 404 and missing.json() == response.json()
        assert sid not in [s["id"] for s in (await http.get("/v1/sessions")).json()["data"]]


async def test_unauthenticated_is_401(base_url: str) -> None:
    async with client(base_url, None) as http:
        response = await http.get("/v1/sessions")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


async def test_pagination(base_url: str, persistence: Persistence) -> None:
    for _ in range(3):
        opened = await sessions_db.open_session(persistence.pool, "carol", None, idle_s=3600)
        await persistence.pool.execute(
            "UPDATE sessions SET closed_at = now() WHERE id = $1", opened.session.id
        )
    info = await persistence.sessions.open("carol", None)
    for n in range(5):
        await persistence.turns.put(record("carol", info.session_id, f"hi there {n} ok"))
    async with client(base_url, "carol") as http:
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"before": cursor} if cursor else {})}
            page = (await http.get("/v1/sessions", params=params)).json()
            seen += [s["id"] for s in page["data"]]
            cursor = page["next_before"]
            if cursor is None:
                break
        assert len(seen) == 4 == len(set(seen))
        first = (await http.get(f"/v1/sessions/{info.session_id}/interactions?limit=3")).json()
        rest = await http.get(
            f"/v1/sessions/{info.session_id}/interactions",
            params={"limit": "3", "before": first["next_before"]},
        )
        ids = [int(t["id"]) for t in first["data"] + rest.json()["data"]]
        assert len(ids) == 5 and ids == sorted(ids, reverse=True)
        assert rest.json()["next_before"] is None
        too_many = await http.get("/v1/sessions", params={"limit": "500"})
        assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "invalid_limit"
        bad = await http.get(f"/v1/sessions/{info.session_id}/interactions?before=x")
        assert bad.status_code == 400


async def test_progress_lists_active_focuses(base_url: str, persistence: Persistence) -> None:
    await set_active_focuses(persistence.pool, "dave", ["breathing", "pacing"])
    async with client(base_url, "dave") as http:
        data = (await http.get("/v1/progress")).json()["data"]
    assert [(p["focus_id"], p["active"], p["level"]) for p in data] == [
        ("breathing", True, None),
        ("pacing", True, None),
    ]
