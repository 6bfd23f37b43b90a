"""`/readyz` over HTTP: it names every route whose targets are all out, and is not ready while
the chat route has no usable target (an upstream that is not running, keys it refuses); a
rotated key brings the route back after the auth cooldown, without a restart."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.server import RunningGateway, running_gateway
from providers.sim import RunningSim, SimKnobs, running_sim
from tests.conftest import FAST_KNOBS, make_settings

Token = Callable[..., str]
PRIMARY = "primary:gpt-4o-mini"  # the default routes with no provider configured
BACKUP = "backup:claude-haiku-4-5"
AUTH_COOLDOWN_S = 0.3


@pytest.fixture
async def own_sim() -> AsyncIterator[RunningSim]:
    """A sim of this test's own, so its request counts are this test's alone."""
    async with running_sim(SimKnobs(**FAST_KNOBS)) as server:
        yield server


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def readyz(gateway: RunningGateway) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        response = await http.get("/readyz")
    return response.status_code, response.json()


async def until_ready(gateway: RunningGateway) -> None:
    async with asyncio.timeout(10):
        while True:
            status, body = await readyz(gateway)
            if status == 200 and not body["routes_out"]:
                return
            await asyncio.sleep(0.05)


async def turn(gateway: RunningGateway, token: Token) -> httpx.Response:
    body = {"model": "coach", "messages": [{"role": "user", "content": "One tip?"}]}
    headers = {"Authorization": f"Bearer {token()}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        return await http.post("/v1/chat/completions", json=body, headers=headers)


async def test_ready_with_every_route_usable(gateway: RunningGateway) -> None:
    status, body = await readyz(gateway)
    assert status == 200 and body["ready"] is True
    assert body["routes_out"] == []
    assert body["checks"]["route:chat"] == "ok: 2 of 2 targets usable"
    assert body["checks"]["route:assess"] == "ok: 1 of 1 targets usable"


async def test_no_provider_and_no_sim_running_is_not_ready(tmp_path: Path) -> None:
    port = closed_port()
    settings = make_settings(f"http://127.0.0.1:{port}", tmp_path)
    async with running_gateway(settings) as gateway:
        status, body = await readyz(gateway)
    assert status == 503 and body["ready"] is False
    assert body["routes_out"] == ["assess", "chat"]
    why = f"unreachable: nothing accepts connections at 127.0.0.1:{port}"
    assert body["checks"]["route:chat"] == f"out: {PRIMARY}: {why}; {BACKUP}: {why}"
    assert body["checks"]["route:assess"] == f"out: {PRIMARY}: {why}"


async def test_refused_keys_take_routes_out_and_a_rotated_key_brings_them_back(
    own_sim: RunningSim, tmp_path: Path, token: Token
) -> None:
    settings = make_settings(own_sim.url, tmp_path, breaker={"auth_cooldown_s": AUTH_COOLDOWN_S})
    async with running_gateway(settings) as gateway:
        await own_sim.set_knobs(models={"gpt-4o-mini": {"fail_rate": 1.0, "fail_status": 401}})
        assert (await turn(gateway, token)).status_code == 200  # answered by the backup
        status, body = await readyz(gateway)
        assert status == 200 and body["routes_out"] == ["assess"]  # chat still has its backup
        assert body["checks"]["route:chat"].startswith("ok: 1 of 2 targets usable")
        assert f"{PRIMARY}: unusable (authentication failed)" in body["checks"]["route:chat"]

        await own_sim.set_knobs(fail_rate=1.0, fail_status=403, models={})
        assert (await turn(gateway, token)).status_code != 200
        status, body = await readyz(gateway)
        assert status == 503 and body["ready"] is False
        assert body["routes_out"] == ["assess", "chat"]
        assert body["checks"]["route:chat"].startswith("out: ")

        await own_sim.set_knobs(fail_rate=0.0)  # the keys were rotated upstream
        await until_ready(gateway)  # once the auth cooldown passed: a probe may go through
        assert (await turn(gateway, token)).status_code == 200
        by_endpoint = own_sim.stats()["by_endpoint"]
        # primary: the first refusal, then nothing until its probe answered the last turn
        assert by_endpoint["chat.completions"] == 2
