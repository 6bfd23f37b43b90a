"""The link between replicas when Redis goes away and comes back (a redis-server of the test's
own on a spare port, stopped and started again), and the feed items' wire format."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.ops_snapshots import OpsBoard
from gateway.replicas import Outbox, decode_batch, encode_batch
from gateway.server import RunningGateway, running_gateway
from tests.conftest import eventually, make_settings
from tests.gateway.conftest import log_lines
from tests.gateway.test_workers import free_port

Token = Callable[..., str]


class RedisServer:
    """A redis-server of this test's own, which it can stop and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self._proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
        client: Redis = Redis.from_url(self.url)
        try:
            for _ in range(200):
                try:
                    await client.ping()
                    return
                except (RedisError, OSError):
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        raise AssertionError("redis-server did not start")

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("no redis-server on this machine")
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def pair(
    fast_sim: Any, tmp_path: Path, redis_server: RedisServer
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    async with AsyncExitStack() as stack:
        gateways = []
        for name in ("a", "b"):
            settings = make_settings(
                fast_sim.url,
                tmp_path / name,
                redis_url=redis_server.url,
                replica_id=name,
                ops_snapshot_interval_s=0.2,
            )
            gateways.append(await stack.enter_async_context(running_gateway(settings)))
        yield gateways[0], gateways[1]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _chat(gw: RunningGateway, token: str, session_id: str | None = None) -> str:
    body: dict[str, Any] = {"message": "Give me a tip"}
    if session_id:
        body["session_id"] = session_id
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
        aconnect_sse(http, "POST", "/v1/chat", json=body, headers=_auth(token)) as source,
    ):
        events = [orjson.loads(sse.data) async for sse in source.aiter_sse()]
    assert events[-1]["type"] == "response.completed"
    sid: str = events[0]["session_id"]
    return sid


async def _next_completed(gw: RunningGateway, token: str, sid: str, ready: asyncio.Event) -> int:
    """Follow a session's feed until a turn that starts completes; its number of events."""
    path = f"/v1/sessions/{sid}/events"
    count = 0
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=20) as http,
        aconnect_sse(http, "GET", path, headers=_auth(token)) as source,
    ):
        assert source.response.status_code == 200
        ready.set()
        async for sse in source.aiter_sse():
            # From a turn's start: the end of an earlier turn may still be on its way here.
            if count or sse.event == "response.started":
                count += 1
            if count and sse.event == "response.completed":
                return count
    raise AssertionError("the feed ended")


async def _seen_across(a: RunningGateway, b: RunningGateway, token: str, sid: str) -> int:
    ready = asyncio.Event()
    async with asyncio.timeout(15):
        follower = asyncio.create_task(_next_completed(b, token, sid, ready))
        await ready.wait()
        await _chat(a, token, sid)
        return await follower


def _link(gw: RunningGateway) -> Any:
    return gw.app.state.gateway.observability.replicas


async def test_chat_goes_on_without_redis_and_the_link_comes_back(
    pair: tuple[RunningGateway, RunningGateway],
    redis_server: RedisServer,
    token: Token,
    captured: io.StringIO,
) -> None:
    a, b = pair
    alice = token("alice")
    sid = await _chat(a, alice)
    await eventually(lambda: b.app.state.gateway.observability.owner_of(sid) == "alice")
    assert await _seen_across(a, b, alice, sid) > 2

    await redis_server.stop()
    # Chat goes on on both replicas (quotas let turns through), and A's own feed still works.
    await _chat(b, token("bob"))
    ready = asyncio.Event()
    async with asyncio.timeout(15):
        local = asyncio.create_task(_next_completed(a, alice, sid, ready))
        await ready.wait()
        await _chat(a, alice, sid)
        assert await local > 2
    await eventually(lambda: not _link(a).up and not _link(b).up)
    async with httpx.AsyncClient(base_url=a.url) as http:
        metrics = (await http.get("/metrics")).text
    assert "coach_replica_redis_up 0.0" in metrics
    assert 'coach_replica_feed_dropped_total{reason="redis_down"}' in metrics
    assert _link(a).outbox.dropped["redis_down"] > 0
    lines = [line["msg"] for line in log_lines(captured)]
    assert any(msg.startswith("redis link (send) down") for msg in lines)
    assert any(msg.startswith("redis link (listen) down") for msg in lines)

    await redis_server.start()  # the same port: no restart of either replica
    await eventually(lambda: _link(a).up and _link(b).up, timeout_s=20)
    assert await _seen_across(a, b, alice, sid) > 2
    lines = [line["msg"] for line in log_lines(captured)]
    assert "redis link (send) back" in lines and "redis link (listen) back" in lines


async def test_the_ops_board_degrades_to_this_replica(
    pair: tuple[RunningGateway, RunningGateway], redis_server: RedisServer
) -> None:
    a, _ = pair
    obs = a.app.state.gateway.observability
    await eventually(lambda: [r["replica"] for r in obs.snapshot()["replicas"]] == ["a", "b"])
    await redis_server.stop()
    await eventually(lambda: [r["replica"] for r in obs.snapshot()["replicas"]] == ["a"])
    await redis_server.start()
    await eventually(lambda: len(obs.snapshot()["replicas"]) == 2, timeout_s=20)


async def test_an_unreadable_snapshot_is_left_out_and_said_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = Redis.from_url(redis_server.url)
    board = OpsBoard(client, "t-ops", "a", interval_s=1.0)
    try:
        await OpsBoard(client, "t-ops", "b", interval_s=1.0).exchange({"connections": 2})
        await client.sadd("t-ops:ops:replicas", "c")
        await client.set("t-ops:ops:replica:c", b"\x00not json", px=60_000)
        caplog.set_level(logging.WARNING, logger="coach.replicas")
        for _ in range(2):
            await board.exchange({"connections": 1})
            assert board.others == {"b": {"connections": 2}}
        said = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
        assert said == ["the ops snapshot of replica c is unreadable; left out"]
        await client.set("t-ops:ops:replica:c", b'{"connections": 3}', px=60_000)
        await board.exchange({"connections": 1})
        assert board.others == {"b": {"connections": 2}, "c": {"connections": 3}}
    finally:
        await client.aclose()


def test_a_batch_round_trips_with_any_bytes() -> None:
    items = [
        ("s1", "alice", (1025, "response.delta", b'{"type":"response.delta","delta":"a\\nb"}')),
        ("s2", "bob", (2049, "response.completed", b"{}")),
    ]
    assert decode_batch(encode_batch("a", 7, items, 12.5)) == ("a", 7, items, 12.5)
    with pytest.raises(ValueError):
        decode_batch(b"not a batch")
    with pytest.raises(ValueError):
        decode_batch(encode_batch("a", 7, items)[:-3])


async def test_the_outbox_drops_new_items_when_full_and_everything_while_down() -> None:
    outbox = Outbox(2)
    for seq in (1, 2, 3):
        outbox.put("s", "alice", (seq, "t", b"{}"))
    assert outbox.dropped["outbox_full"] == 1
    await outbox.wait()
    assert [entry[0] for _, _, entry in outbox.take_nowait(10)] == [1, 2]  # the oldest kept
    outbox.put("s", "alice", (4, "t", b"{}"))
    outbox.close()
    outbox.put("s", "alice", (5, "t", b"{}"))
    assert len(outbox) == 0 and outbox.dropped["redis_down"] == 2
    outbox.reopen()
    outbox.put("s", "alice", (6, "t", b"{}"))
    assert [entry[0] for _, _, entry in outbox.take_nowait(10)] == [6]


async def test_a_replica_skips_its_own_batches(
    pair: tuple[RunningGateway, RunningGateway], token: Token
) -> None:
    a, b = pair
    alice = token("alice")
    sid = await _chat(a, alice)
    await eventually(lambda: b.app.state.gateway.observability.owner_of(sid) == "alice")
    hub = a.app.state.gateway.observability.hub
    published = hub.feed(sid, "alice").last_seq
    await asyncio.sleep(0.3)  # time for an echo to come back, were it taken
    assert _link(a).messages["received"] == 0 and _link(b).messages["received"] > 0
    async with httpx.AsyncClient(base_url=b.url) as http:
        metrics = (await http.get("/metrics")).text
    assert "coach_replica_feed_lag_seconds_count" in metrics
    assert hub.feed(sid, "alice").last_seq == published
