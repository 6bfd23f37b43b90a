"""`/mcp` with the `mcp` SDK's own streamable HTTP client against the whole gateway on a real
uvicorn on loopback, on a real Postgres: the tools are listed, a read tool answers from the
token's user's data only, a write tool only proposes, and a request without a token is a JSON
401 in the gateway's error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import orjson
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from db.focuses import active_focuses, set_active_focuses
from db.pool import Pool, open_pool
from gateway.auth import mint_token
from gateway.server import RunningGateway, running_gateway
from gateway.tool_specs import TOOL_SPECS
from tests.conftest import TEST_SECRET, make_settings
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]


@pytest.fixture(scope="module")
async def gateway(
    sim: Any, database_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    settings = make_settings(
        sim.url, tmp_path_factory.mktemp("mcp"), persistence=True, database_url=database_dsn
    )
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def pool(gateway: RunningGateway, database_dsn: str) -> AsyncIterator[Pool]:
    p = await open_pool(database_dsn, max_size=2)  # migrated by the gateway
    yield p
    await p.close()


@asynccontextmanager
async def mcp_session(url: str, user: str) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, user)}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=20) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def result_json(result: Any) -> dict[str, Any]:
    [block] = result.content
    data: dict[str, Any] = orjson.loads(block.text)
    return data


async def test_the_sdk_client_lists_the_tools(gateway: RunningGateway) -> None:
    async with mcp_session(gateway.url, "mcp-lister") as session:
        listed = await session.list_tools()
    assert [t.name for t in listed.tools] == [s.name for s in TOOL_SPECS]
    by_name = {t.name: t for t in listed.tools}
    assert by_name["search_drills"].input_schema["required"] == ["query"]


async def test_get_progress_reads_the_tokens_user_only(gateway: RunningGateway, pool: Pool) -> None:
    await set_active_focuses(pool, "mcp-ann", ["breathing", "pacing"])
    await set_active_focuses(pool, "mcp-bob", ["clarity"])
    async with mcp_session(gateway.url, "mcp-ann") as session:
        result = await session.call_tool("get_progress", {})
    assert not result.is_error
    assert result_json(result)["active_focus_ids"] == ["breathing", "pacing"]


async def test_propose_focus_change_writes_nothing_until_accepted(
    gateway: RunningGateway, pool: Pool
) -> None:
    user = "mcp-cat"
    await set_active_focuses(pool, user, ["pacing"])
    async with mcp_session(gateway.url, user) as session:
        result = await session.call_tool("propose_focus_change", {"focus_ids": ["clarity"]})
        bad = await session.call_tool("propose_focus_change", {"focus_ids": ["juggling"]})
    proposal = result_json(result)
    assert not result.is_error and proposal["status"] == "pending"
    assert proposal["payload"]["focus_ids"] == ["clarity"]
    assert [f.id for f in await active_focuses(pool, user)] == ["pacing"]  # nothing written
    assert bad.is_error and "juggling" in result_json(bad)["error"]

    headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, user)}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
        pending = (await http.get("/v1/changes")).json()["changes"]
        accepted = await http.post(f"/v1/changes/{proposal['change_id']}/accept")
    assert [c["id"] for c in pending] == [proposal["change_id"]]
    assert accepted.status_code == 200, accepted.text
    assert [f.id for f in await active_focuses(pool, user)] == ["clarity"]


async def test_without_a_token_mcp_is_a_json_401(gateway: RunningGateway) -> None:
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        refused = await http.post("/mcp", json=initialize)
        forged = await http.post(
            "/mcp", json=initialize, headers={"Authorization": "Bearer not-a-jwt"}
        )
    for response in (refused, forged):
        assert response.status_code == 401
        assert response.json()["error"]["code"] in ("unauthenticated", "invalid_token")


def test_mcp_is_no_openapi_route(tmp_path: Path) -> None:
    """A protocol endpoint like the WebSocket: described in docs/protocol.md."""
    from gateway.openapi import openapi_document

    assert "/mcp" not in openapi_document()["paths"]
    assert "/mcp" in (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
