"""Live feeds over SSE (who may read them, resuming), the ops feed, and live coaching."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

import streams.events
from gateway.server import RunningGateway
from streams.events import ResponseDelta
from tests.conftest import make_settings
from tests.gateway.observed import observed_gateway
from tests.gateway.wsclient import ws_client

Token = Callable[..., str]
Event = tuple[str, int, dict[str, Any]]


@pytest.fixture
async def gw(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(fast_sim.url, tmp_path, ops_snapshot_interval_s=0.1)
    async with observed_gateway(settings) as running:
        yield running


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _chat(gw: RunningGateway, token: str, session_id: str | None = None) -> str:
    """Run one SSE turn; returns its session id."""
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


async def _read_feed(
    gw: RunningGateway,
    token: str,
    path: str,
    until: str,
    *,
    headers: dict[str, str] | None = None,
    started: asyncio.Event | None = None,
) -> list[Event]:
    events: list[Event] = []
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
        aconnect_sse(http, "GET", path, headers={**_auth(token), **(headers or {})}) as source,
    ):
        assert source.response.status_code == 200
        if started is not None:
            started.set()
        async for sse in source.aiter_sse():
            events.append((sse.event, int(sse.id), orjson.loads(sse.data)))
            if sse.event == until:
                return events
    raise AssertionError(f"feed ended before {until}: {events}")


async def test_owner_and_ops_follow_a_session(gw: RunningGateway, token: Token) -> None:
    sid = await _chat(gw, token("alice"))
    path = f"/v1/sessions/{sid}/events"
    owner_ready, ops_ready = asyncio.Event(), asyncio.Event()
    async with asyncio.timeout(10):
        owner = asyncio.create_task(
            _read_feed(gw, token("alice"), path, "response.completed", started=owner_ready)
        )
        ops = asyncio.create_task(
            _read_feed(gw, token("olga", ["ops"]), path, "response.completed", started=ops_ready)
        )
        await owner_ready.wait()
        await ops_ready.wait()
        await _chat(gw, token("alice"), sid)
        seen, seen_by_ops = await owner, await ops
    names = [name for name, _, _ in seen]
    assert names[0] == "response.started" and "response.delta" in names
    assert seen == seen_by_ops
    ids = [seq for _, seq, _ in seen]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert seen[-1][2]["type"] == "response.completed"

    # Resume after the first event of that turn: the rest is replayed from the buffer.
    resumed = await _read_feed(
        gw, token("alice"), path, "response.completed", headers={"Last-Event-ID": str(ids[0])}
    )
    assert resumed == seen[1:]


async def test_other_users_and_unknown_sessions_get_404(gw: RunningGateway, token: Token) -> None:
    sid = await _chat(gw, token("alice"))
    async with httpx.AsyncClient(base_url=gw.url) as http:
        other = await http.get(f"/v1/sessions/{sid}/events", headers=_auth(token("mallory")))
        unknown = await http.get("/v1/sessions/nope/events", headers=_auth(token("alice")))
        anonymous = await http.get(f"/v1/sessions/{sid}/events")
        push = await http.post(
            f"/v1/sessions/{sid}/metrics",
            json={"metrics": {"tempo": 0.5}},
            headers=_auth(token("mallory")),
        )
    assert other.status_code == 404 and other.json()["error"]["code"] == "session_not_found"
    assert unknown.status_code == 404
    assert anonymous.status_code == 401
    assert push.status_code == 404


async def test_ops_feed(gw: RunningGateway, token: Token) -> None:
    async with httpx.AsyncClient(base_url=gw.url) as http:
        denied = await http.get("/v1/ops/events", headers=_auth(token("alice")))
    assert denied.status_code == 403
    events = await _read_feed(gw, token("olga", ["ops"]), "/v1/ops/events", "ops.snapshot")
    snapshot = events[-1][2]
    for key in (
        "active_sessions",
        "connections",
        "running_turns",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "turns_last_minute",
        "error_rate",
        "breakers",
        "quota_rejections",
        "assess_queue_depth",
    ):
        assert key in snapshot
    assert snapshot["breakers"]["primary:gpt-4o-mini"] == "closed"


async def test_ops_feed_reports_turns_and_breaker_changes(
    gw: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await _chat(gw, token("alice"))
    ready = asyncio.Event()
    reader = asyncio.create_task(
        _read_feed(gw, token("olga", ["ops"]), "/v1/ops/events", "breaker.changed", started=ready)
    )
    await ready.wait()
    # A rejected key marks the primary unusable: the breaker change is pushed at once.
    await fast_sim.set_knobs(models={"gpt-4o-mini": {"fail_rate": 1.0, "fail_status": 401}})
    try:
        await _chat(gw, token("alice"))
    finally:
        await fast_sim.set_knobs(models={})
    async with asyncio.timeout(10):
        events = await reader
    change = events[-1][2]
    assert change["target"] == "primary:gpt-4o-mini" and change["new"] == "unusable"
    snapshots = [data for name, _, data in events if name == "ops.snapshot"]
    assert snapshots[-1]["turns_last_minute"] >= 1
    assert snapshots[-1]["ttft_p50_ms"] > 0


async def test_live_coaching_over_websocket(gw: RunningGateway, token: Token) -> None:
    async with ws_client(gw.ws_url, token("alice")) as client:
        created = await client.until("session.created")
        sid = created[-1]["session_id"]
        await client.send(type="metrics.push", metrics={"pitch_accuracy": 0.3, "tempo": 0.8})
        await client.send(type="metrics.push", metrics={"pitch_accuracy": 0.35})
        feedback = (await client.until("coaching.feedback"))[-1]
        assert feedback["weakest_metric"] == "pitch_accuracy"
        assert feedback["text"]
        # A push over HTTP lands in the same session, within the interval: no second tip.
        async with httpx.AsyncClient(base_url=gw.url) as http:
            pushed = await http.post(
                f"/v1/sessions/{sid}/metrics",
                json={"metrics": {"tempo": 10}},
                headers=_auth(token("alice")),
            )
            bad = await http.post(
                f"/v1/sessions/{sid}/metrics",
                json={"metrics": {"tempo": "fast"}},
                headers=_auth(token("alice")),
            )
        assert pushed.status_code == 202
        assert pushed.json() == {"accepted": True, "feedback_scheduled": False}
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_metrics"
        await client.send(type="ping")
        rest = await client.until("pong")
        assert all(event["type"] != "coaching.feedback" for event in rest)
    replay = await _read_feed(
        gw,
        token("alice"),
        f"/v1/sessions/{sid}/events",
        "coaching.feedback",
        headers={"Last-Event-ID": "0"},
    )
    assert [name for name, _, _ in replay].count("metrics") >= 2


class _CountingJson:
    """orjson as `streams.events` sees it, keeping every object it is asked to encode (kept
    alive, so that no two share an `id`)."""

    def __init__(self) -> None:
        self.dumped: list[Any] = []

    def dumps(self, obj: Any, /, *args: Any, **kwargs: Any) -> bytes:
        self.dumped.append(obj)
        return orjson.dumps(obj, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(orjson, name)


async def _ws_turn(gw: RunningGateway, token: Token, follow: Callable[[str], Any]) -> list[Any]:
    async with ws_client(gw.ws_url, token("alice")) as client:
        sid = (await client.until("session.created"))[-1]["session_id"]
        await follow(sid)
        await client.send(type="input_text", text="Give me a tip")
        return await client.until("response.completed")


async def _sse_turn(gw: RunningGateway, token: Token, follow: Callable[[str], Any]) -> list[Any]:
    sid = await _chat(gw, token("alice"))
    await follow(sid)
    body = {"message": "Give me a tip", "session_id": sid}
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
        aconnect_sse(http, "POST", "/v1/chat", json=body, headers=_auth(token("alice"))) as src,
    ):
        return [orjson.loads(sse.data) async for sse in src.aiter_sse()]


@pytest.mark.parametrize("turn", [_ws_turn, _sse_turn], ids=["websocket", "sse"])
async def test_each_event_is_encoded_once_for_its_client_and_the_feed(
    gw: RunningGateway, token: Token, monkeypatch: pytest.MonkeyPatch, turn: Any
) -> None:
    encoder = _CountingJson()
    monkeypatch.setattr(streams.events, "orjson", encoder)
    reader: asyncio.Task[list[Event]] | None = None

    async def follow(sid: str) -> None:
        nonlocal reader
        ready = asyncio.Event()
        path = f"/v1/sessions/{sid}/events"
        reader = asyncio.create_task(
            _read_feed(gw, token("alice"), path, "response.completed", started=ready)
        )
        await ready.wait()

    async with asyncio.timeout(10):
        sent = await turn(gw, token, follow)
        assert reader is not None
        fed = await reader
    deltas = [event for event in sent if event["type"] == "response.delta"]
    assert deltas and deltas == [data for name, _, data in fed if name == "response.delta"]
    # Every event of the turn went to its client and to the feed, each encoded once.
    encoded = Counter(id(obj) for obj in encoder.dumped)
    assert encoded and set(encoded.values()) == {1}
    turn_id = deltas[0]["turn_id"]
    turn_deltas = [
        obj for obj in encoder.dumped if isinstance(obj, ResponseDelta) and obj.turn_id == turn_id
    ]
    assert len(turn_deltas) == len(deltas)
