"""Two `coach-gateway serve` processes, one Postgres database, one Redis: one gateway.

A session's feed on one replica shows turns made on the other; `?session_id=` resumes anywhere
with the history; the ops feed shows both replicas; a quota tier is exact across them; and a
replica killed with sessions open loses no stored turn while its clients carry on on the other.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.auth import mint_token
from tests.conftest import TEST_SECRET, eventually
from tests.gateway.test_workers import free_port
from tests.gateway.wsclient import ws_client
from tests.pg import database_dsn, migrated_pool, server_dsn  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CONFIG = """
[quotas]
turns_per_minute = 100

[quotas.tiers.trial]
turns_per_minute = 3
"""
Event = tuple[str, int, dict[str, Any]]


@dataclass
class Replica:
    name: str
    url: str
    proc: asyncio.subprocess.Process


async def _redis_reachable() -> bool:
    client: Redis = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
        return True
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def start_replica(name: str, env: dict[str, str]) -> Replica:
    port = free_port()
    argv = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, env={**env, "COACH_REPLICA_ID": name}
    )
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return Replica(name, url, proc)
            except httpx.TransportError:
                pass
            assert proc.returncode is None, f"replica {name} exited early"
            await asyncio.sleep(0.1)
    raise AssertionError(f"replica {name} did not start")


@pytest.fixture
async def pair(
    fast_sim: Any,
    migrated_pool: Any,  # noqa: F811
    database_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> AsyncIterator[tuple[Replica, Replica]]:
    if not await _redis_reachable():
        pytest.skip(f"no Redis at {REDIS_URL}")
    config = tmp_path / "coach.toml"
    config.write_text(CONFIG)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("COACH_")},
        "COACH_CONFIG": str(config),
        "COACH_JWT_SECRET": TEST_SECRET,
        "COACH_SIM_URL": fast_sim.url,
        "COACH_DATA_DIR": str(tmp_path),
        "COACH_LOG_LEVEL": "warning",
        "COACH_OPS_SNAPSHOT_INTERVAL_S": "0.2",
        "COACH_SHUTDOWN_GRACE_S": "2",
        "COACH_SCHEDULER__ENABLED": "false",
        "COACH_REDIS_KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}",
        "DATABASE_URL": database_dsn,
        "REDIS_URL": REDIS_URL,
    }
    a, b = await asyncio.gather(start_replica("a", env), start_replica("b", env))
    try:
        yield a, b
    finally:
        for replica in (a, b):
            if replica.proc.returncode is None:
                replica.proc.send_signal(signal.SIGTERM)
        for replica in (a, b):
            try:
                await asyncio.wait_for(replica.proc.wait(), 20)
            except TimeoutError:
                replica.proc.kill()
                await replica.proc.wait()


def _auth(user: str = "alice", roles: list[str] | None = None, tier: str | None = None) -> Any:
    return {"Authorization": f"Bearer {mint_token(TEST_SECRET, user, roles=roles, tier=tier)}"}


async def chat(replica: Replica, session_id: str | None = None, **who: Any) -> list[Any]:
    """One turn over `POST /v1/chat`; its events (the first is `session.created`)."""
    body: dict[str, Any] = {"message": "Give me a tip"}
    if session_id:
        body["session_id"] = session_id
    async with (
        httpx.AsyncClient(base_url=replica.url, timeout=20) as http,
        aconnect_sse(http, "POST", "/v1/chat", json=body, headers=_auth(**who)) as source,
    ):
        if source.response.status_code != 200:
            await source.response.aread()
            return [source.response.status_code, source.response.json()]
        return [orjson.loads(sse.data) async for sse in source.aiter_sse()]


async def read_feed(
    replica: Replica,
    path: str,
    done: Callable[[list[Event]], bool],
    *,
    started: asyncio.Event | None = None,
    headers: dict[str, str] | None = None,
    events: list[Event] | None = None,
    **who: Any,
) -> list[Event]:
    events = [] if events is None else events
    async with (
        httpx.AsyncClient(base_url=replica.url, timeout=20) as http,
        aconnect_sse(http, "GET", path, headers={**_auth(**who), **(headers or {})}) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        if started is not None:
            started.set()
        async for sse in source.aiter_sse():
            events.append((sse.event, int(sse.id), orjson.loads(sse.data)))
            if done(events):
                return events
    raise AssertionError(f"the feed ended early: {events}")


async def caught_up(replica: Replica, path: str, **who: Any) -> None:
    """Until `replica` holds the end of the session's latest turn (made elsewhere), so that a
    reader opened now gets nothing of that turn late."""
    async with asyncio.timeout(20):
        await read_feed(replica, path, _completed(1), headers={"Last-Event-ID": "0"}, **who)


def _completed(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(name == "response.completed" for name, _, _ in events) >= count


def _turn_done(turn_id: str) -> Callable[[list[Event]], bool]:
    return lambda events: (
        (events[-1][0], events[-1][2].get("turn_id"))
        == (
            "response.completed",
            turn_id,
        )
    )


async def test_a_feed_on_b_shows_turns_made_on_a(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    sid = (await chat(a))[0]["session_id"]
    path = f"/v1/sessions/{sid}/events"
    await caught_up(b, path)
    ready = asyncio.Event()
    async with asyncio.timeout(20):
        # B never saw this session: it finds its owner in Postgres.
        on_b = asyncio.create_task(read_feed(b, path, _completed(2), started=ready))
        await ready.wait()
        sent = [*await chat(a, sid), *await chat(a, sid)]
        seen = await on_b
    turn_events = [e for e in sent if e["type"] != "session.created"]
    assert [data for _, _, data in seen] == turn_events  # every event, in order
    ids = [seq for _, seq, _ in seen]
    assert ids == sorted(set(ids))  # unique and ordered
    # B kept them for replay: resuming there after the first event gets the rest.
    resumed = await read_feed(b, path, _completed(2), headers={"Last-Event-ID": str(ids[0])})
    assert resumed == seen[1:]


async def test_resume_on_b_continues_with_history(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    first = await chat(a, user="rita")
    sid = first[0]["session_id"]
    assert first[0]["resumed"] is False
    second = await chat(b, sid, user="rita")
    assert second[0]["session_id"] == sid and second[0]["resumed"] is True
    assert second[-1]["type"] == "response.completed"
    async with httpx.AsyncClient(base_url=a.url) as http:
        response = await http.get(f"/v1/sessions/{sid}/interactions", headers=_auth("rita"))
    assert response.status_code == 200
    assert len(response.json()["data"]) == 2


async def test_the_ops_feed_shows_both_replicas(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    await chat(b, user="bob")

    def both(events: list[Event]) -> bool:
        rows = {row["replica"]: row for row in events[-1][2].get("replicas", [])}
        return set(rows) == {"a", "b"} and rows["b"]["turns_last_minute"] >= 1

    async with asyncio.timeout(20):
        events = await read_feed(a, "/v1/ops/events", both, user="olga", roles=["ops"])
    snapshot = events[-1][2]
    assert snapshot["replica"] == "a"
    assert snapshot["totals"]["replicas"] == 2
    rows = {row["replica"]: row for row in snapshot["replicas"]}
    assert snapshot["totals"]["turns_last_minute"] == sum(
        row["turns_last_minute"] for row in rows.values()
    )
    assert rows["b"]["turns_last_minute"] >= 1


async def test_a_quota_tier_is_exact_across_replicas(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    outcomes = [await chat(replica, user="tina", tier="trial") for replica in (a, b, a, b)]
    assert [o[-1]["type"] for o in outcomes[:3]] == ["response.completed"] * 3
    assert outcomes[3][0] == 429
    assert outcomes[3][1]["error"]["code"] == "rate_limited"
    # The top-level limits (100 a minute) for a token of no tier, or of a tier not configured.
    for user, tier in (("una", None), ("nora", "platinum")):
        runs = [await chat(replica, user=user, tier=tier) for replica in (a, b, a, b)]
        assert all(run[-1]["type"] == "response.completed" for run in runs)


async def test_a_killed_replica_loses_no_stored_turn(
    pair: tuple[Replica, Replica], fast_sim: Any
) -> None:
    a, b = pair
    ws_a, ws_b = a.url.replace("http", "ws"), b.url.replace("http", "ws")
    token = mint_token(TEST_SECRET, "kim")
    async with ws_client(ws_a, token) as client:
        sid = (await client.recv())["session_id"]
        await client.send(type="input_text", text="first", turn_id="t1")
        await client.until("response.completed")
        await caught_up(b, f"/v1/sessions/{sid}/events", user="kim")
        ready, on_b = asyncio.Event(), list[Event]()
        feed_on_b = asyncio.create_task(
            read_feed(
                b,
                f"/v1/sessions/{sid}/events",
                _turn_done("t3"),
                started=ready,
                events=on_b,
                user="kim",
            )
        )
        await ready.wait()
        await fast_sim.set_knobs(tokens_per_s=10, reply_tokens=50)  # a turn of seconds
        await client.send(type="input_text", text="second", turn_id="t2")
        await client.until("response.delta")
        # A's deltas of the turn reach B; then A dies in the middle of it.
        await eventually(lambda: any(name == "response.delta" for name, _, _ in on_b))
        a.proc.send_signal(signal.SIGKILL)
        await a.proc.wait()
    await fast_sim.set_knobs(tokens_per_s=0)
    # The client reconnects to the other replica and resumes the session.
    async with ws_client(ws_b, token, query=f"?session_id={sid}") as client:
        created = await client.recv()
        assert created["session_id"] == sid and created["resumed"] is True
        await client.send(type="input_text", text="third", turn_id="t3")
        await client.until("response.completed")
    async with asyncio.timeout(20):
        seen = await feed_on_b
    turn_ids = [data.get("turn_id") for name, _, data in seen if name.startswith("response.")]
    assert turn_ids[0] == "t2" and turn_ids[-1] == "t3"  # A's deltas, then B's turn
    ids = [seq for _, seq, _ in seen]
    assert ids == sorted(set(ids))  # B numbers on after what A published
    async with httpx.AsyncClient(base_url=b.url) as http:
        response = await http.get(f"/v1/sessions/{sid}/interactions", headers=_auth("kim"))
        stored = response.json()
    kept = {row["turn_id"] for row in stored["data"]}
    assert {"t1", "t3"} <= kept  # the turn completed on A survived its replica

    # A no longer writes its snapshot: it drops out of B's ops feed within seconds.
    def only_b(events: list[Event]) -> bool:
        rows = events[-1][2].get("replicas", [])
        return [row["replica"] for row in rows] == ["b"]

    async with asyncio.timeout(15):
        await read_feed(b, "/v1/ops/events", only_b, user="olga", roles=["ops"])
