"""Repeated rejections of one client are logged once per interval with a count, not once each."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.ids import hash_id
from gateway.logs import LogSampler
from gateway.server import running_gateway
from gateway.settings import QuotaSettings
from tests.conftest import eventually, make_settings

Token = Callable[..., str]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Emitted = list[tuple[str, int, float]]


def _sampler(clock: FakeClock, emitted: Emitted, **kwargs: Any) -> LogSampler[str, str]:
    def emit(payload: str, count: int, seconds: float) -> None:
        emitted.append((payload, count, seconds))

    return LogSampler(10.0, emit, clock=clock, **kwargs)


def test_a_key_is_logged_at_once_then_once_per_interval_with_a_count() -> None:
    clock = FakeClock()
    emitted: Emitted = []
    sampler = _sampler(clock, emitted)
    assert sampler.admit("alice", "r0")
    assert not any(sampler.admit("alice", f"r{i}") for i in range(1, 200))
    assert sampler.admit("bob", "b0")  # another client is sampled apart
    clock.now += 10.0
    sampler.flush_due()
    assert emitted == [("r199", 199, 10.0)]
    assert not sampler.admit("alice", "r200")  # still retrying: folded into the next line
    clock.now += 10.0
    sampler.flush_due()
    assert emitted[1:] == [("r200", 1, 10.0)]
    clock.now += 10.0
    sampler.flush_due()  # a quiet interval: the key is forgotten
    assert len(sampler) == 0 and len(emitted) == 2
    assert sampler.admit("alice", "r201")


def test_the_table_of_keys_stays_bounded() -> None:
    clock = FakeClock()
    emitted: Emitted = []
    sampler = _sampler(clock, emitted, max_keys=100)
    for i in range(10_000):
        assert sampler.admit(f"client-{i}", "first")  # a new identity each time
        sampler.admit(f"client-{i}", "again")
        assert len(sampler) <= 100
    # Keys pushed out early still get their line: nothing folded is lost.
    assert len(emitted) == 10_000 - 100
    sampler.close()
    assert len(emitted) == 10_000 and len(sampler) == 0


async def test_an_interval_ends_on_the_loop_timer_without_another_event() -> None:
    emitted: Emitted = []
    sampler: LogSampler[str, str] = LogSampler(
        0.05, lambda payload, count, seconds: emitted.append((payload, count, seconds))
    )
    for i in range(3):
        sampler.admit("alice", f"r{i}")
    await eventually(lambda: bool(emitted))
    assert emitted[0][:2] == ("r2", 2)


async def _chat(url: str, jwt: str, times: int) -> list[int]:
    """`times` chat turns one after another; their statuses."""
    headers = {"Authorization": f"Bearer {jwt}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        sent = [await http.post("/v1/chat", json={"message": "hi"}) for _ in range(times)]
    return [response.status_code for response in sent]


async def test_quota_rejections_are_logged_once_per_interval(
    fast_sim: Any, tmp_path: Path, token: Token, captured: io.StringIO
) -> None:
    settings = make_settings(
        fast_sim.url,
        tmp_path,
        quotas=QuotaSettings(turns_per_minute=1),
        log_sample_interval_s=60.0,
    )
    async with running_gateway(settings) as gw:
        quinn = await _chat(gw.url, token("quinn"), 201)
        rita = await _chat(gw.url, token("rita"), 4)
    # Closing the gateway wrote the counts still folded.
    assert quinn.count(429) == 200 and rita.count(429) == 3
    lines = [orjson.loads(line) for line in captured.getvalue().splitlines()]
    for user, folded in (("quinn", 199), ("rita", 2)):
        access = [
            line
            for line in lines
            if line["logger"] == "coach.access"
            and line.get("status") == 429
            and line.get("user_id") == hash_id(user)
        ]
        quota = [
            line
            for line in lines
            if line["logger"] == "coach.quota" and line.get("user") == hash_id(user)
        ]
        for kept in (access, quota):
            assert len(kept) == 2, kept
            assert "suppressed" not in kept[0]
            assert kept[1]["suppressed"] == folded
            assert f"{folded:,} more" in kept[1]["msg"]
        assert access[1]["route"] == "/v1/chat" and quota[1]["scope"] == "turns_per_minute"
    successes = [
        line for line in lines if line["logger"] == "coach.access" and line.get("status") == 200
    ]
    assert len(successes) == 2  # one line each, as before
