"""`/v1/changes` and `/v1/memories` over a real uvicorn on loopback, on a real Postgres: a change
is applied once and only by its owner, rejecting writes nothing, an expired or foreign change is
a 404, a second decision a 409, and memories are the caller's alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from db.changes import create_change
from db.focuses import active_focuses, set_active_focuses
from db.memories import list_memories
from gateway.agent_routes import agent_routes
from gateway.auth import mint_token
from gateway.changes import propose_focus_change, propose_memory
from gateway.persistence import Persistence, open_persistence
from gateway.settings import Settings
from tests.conftest import TEST_SECRET
from tests.gateway.parts import parts_app, served
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

DAY_S = 24 * 3600.0


@pytest.fixture(scope="module")
async def persistence(
    database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Persistence]:
    settings = Settings(
        database_url=database_dsn, data_dir=tmp_path_factory.mktemp("data"), jwt_secret=TEST_SECRET
    )
    p = await open_persistence(settings)
    yield p
    await p.aclose()


@pytest.fixture(scope="module")
async def base_url(persistence: Persistence) -> AsyncIterator[str]:
    settings = Settings(jwt_secret=TEST_SECRET, persistence=False)
    async with (
        parts_app(agent_routes(), settings, persistence=persistence) as app,
        served(app) as url,
    ):
        yield url


def client(base_url: str, user: str | None) -> httpx.AsyncClient:
    headers = {} if user is None else {"Authorization": f"Bearer {mint_token(TEST_SECRET, user)}"}
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10)


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    code: str = response.json()["error"]["code"]
    return code


async def test_accept_applies_once_and_a_second_decision_is_a_409(
    base_url: str, persistence: Persistence
) -> None:
    user, pool = "routes-ann", persistence.pool
    await set_active_focuses(pool, user, ["pacing"])
    change = await propose_focus_change(pool, user, None, ["clarity", "breathing"], ttl_s=DAY_S)
    async with client(base_url, user) as http:
        [pending] = (await http.get("/v1/changes", params={"status": "pending"})).json()["changes"]
        assert pending["id"] == change.id and pending["status"] == "pending"
        assert [f.id for f in await active_focuses(pool, user)] == ["pacing"]

        accepted = await http.post(f"/v1/changes/{change.id}/accept")
        assert accepted.status_code == 200, accepted.text
        body: dict[str, Any] = accepted.json()["change"]
        assert body["status"] == "applied" and body["kind"] == "focus_change"
        assert set(body) == {"id", "kind", "payload", "status", "expires_at", "created_at"}
        assert [f.id for f in await active_focuses(pool, user)] == ["clarity", "breathing"]

        await set_active_focuses(pool, user, ["structure"])  # the user changes them again
        again = await http.post(f"/v1/changes/{change.id}/accept")
        assert error_code(again, 409) == "change_already_decided"
        late_reject = await http.post(f"/v1/changes/{change.id}/reject")
        assert error_code(late_reject, 409) == "change_already_decided"
        assert [f.id for f in await active_focuses(pool, user)] == ["structure"]  # not re-applied
        listed = (await http.get("/v1/changes", params={"status": "applied"})).json()
        assert [c["id"] for c in listed["changes"]] == [change.id]
        assert (await http.get("/v1/changes")).json() == {"changes": []}  # default: pending


async def test_reject_writes_nothing(base_url: str, persistence: Persistence) -> None:
    user, pool = "routes-rej", persistence.pool
    change = await propose_memory(pool, user, None, "I play drums", ttl_s=DAY_S)
    async with client(base_url, user) as http:
        rejected = await http.post(f"/v1/changes/{change.id}/reject")
        assert rejected.status_code == 200 and rejected.json()["change"]["status"] == "rejected"
        accept = await http.post(f"/v1/changes/{change.id}/accept")
        assert error_code(accept, 409) == "change_already_decided"
        listed = (await http.get("/v1/changes", params={"status": "rejected"})).json()
    assert [c["id"] for c in listed["changes"]] == [change.id]
    assert await list_memories(pool, user) == []


async def test_foreign_unknown_and_expired_changes_are_404(
    base_url: str, persistence: Persistence
) -> None:
    pool = persistence.pool
    owned = await propose_memory(pool, "routes-owner", None, "my secret goal", ttl_s=DAY_S)
    expired = await create_change(
        pool, "routes-owner", None, "memory", {"text": "late"}, ttl_s=0.05
    )
    await asyncio.sleep(0.1)
    async with client(base_url, "routes-intruder") as http:
        for verb in ("accept", "reject"):
            refused = await http.post(f"/v1/changes/{owned.id}/{verb}")
            assert error_code(refused, 404) == "change_not_found"
        assert (await http.get("/v1/changes")).json() == {"changes": []}
    async with client(base_url, "routes-owner") as http:
        for change_id in ("no-such-change", "%00", "a" * 80, expired.id):
            refused = await http.post(f"/v1/changes/{change_id}/accept")
            assert error_code(refused, 404) == "change_not_found"
        [pending] = (await http.get("/v1/changes")).json()["changes"]
        [late] = (await http.get("/v1/changes", params={"status": "expired"})).json()["changes"]
        bad = await http.get("/v1/changes", params={"status": "done"})
    assert pending["id"] == owned.id and late["id"] == expired.id
    assert error_code(bad, 400) == "invalid_request"
    assert await list_memories(pool, "routes-intruder") == []
    assert await list_memories(pool, "routes-owner") == []


async def test_memories_are_listed_and_forgotten_by_their_owner_only(
    base_url: str, persistence: Persistence
) -> None:
    user, pool = "routes-mem", persistence.pool
    change = await propose_memory(
        pool, user, None, "Goal: sing at my sister's wedding", ttl_s=DAY_S
    )
    async with client(base_url, user) as http:
        assert (await http.get("/v1/memories")).json() == {"memories": []}
        await http.post(f"/v1/changes/{change.id}/accept")
        [memory] = (await http.get("/v1/memories")).json()["memories"]
    assert memory["text"] == "Goal: sing at my sister's wedding"
    assert set(memory) == {"id", "text", "created_at"}
    async with client(base_url, "routes-other") as http:
        assert (await http.get("/v1/memories")).json() == {"memories": []}
        foreign = await http.delete(f"/v1/memories/{memory['id']}")
        assert error_code(foreign, 404) == "memory_not_found"
    async with client(base_url, user) as http:
        for bad_id in ("abc", "%00", "9" * 30):
            assert error_code(await http.delete(f"/v1/memories/{bad_id}"), 404)
        assert (await http.delete(f"/v1/memories/{memory['id']}")).status_code == 204
        gone = await http.delete(f"/v1/memories/{memory['id']}")
        assert error_code(gone, 404) == "memory_not_found"
        assert (await http.get("/v1/memories")).json() == {"memories": []}


async def test_a_token_is_required_and_a_database(base_url: str) -> None:
    async with client(base_url, None) as http:
        for response in (await http.get("/v1/changes"), await http.get("/v1/memories")):
            assert error_code(response, 401) == "unauthenticated"
    settings = Settings(jwt_secret=TEST_SECRET, persistence=False)
    async with (
        parts_app(agent_routes(), settings) as app,
        served(app) as url,
        client(url, "routes-nodb") as http,
    ):
        response = await http.post("/v1/changes/x/accept")
    assert error_code(response, 503) == "persistence_unavailable"
