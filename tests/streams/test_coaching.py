"""Live coaching: metrics recorded and published, at most one tip per interval, over a real
router to the simulated upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.upstreams import build_router
from providers.routing import Router
from streams.coaching import open_coach, weakest_metric
from streams.events import CoachingFeedback, ServerEvent
from streams.hub import Hub
from tests.conftest import make_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def router(fast_sim: Any, tmp_path: Path) -> AsyncIterator[Router]:
    settings = make_settings(fast_sim.url, tmp_path).with_default_upstreams()
    router = build_router(settings)
    try:
        yield router
    finally:
        await router.aclose()


def test_weakest_metric_reads_both_scales() -> None:
    assert weakest_metric({"pitch_accuracy": 0.9, "tempo": 0.4}) == "tempo"
    assert weakest_metric({"pitch_accuracy": 35, "tempo": 0.5}) == "pitch_accuracy"
    assert weakest_metric({"b": 0.5, "a": 50}) == "a"  # tie: alphabetical


async def _until(predicate: Any, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_one_tip_per_interval(router: Router) -> None:
    hub = Hub(replay=32, queue_size=32)
    watcher = hub.feed("s1", "alice").subscribe()
    delivered: list[tuple[str, ServerEvent]] = []
    clock = FakeClock()

    def deliver(session_id: str, event: ServerEvent) -> None:
        """Like the gateway's: to the session's connections and its feed."""
        delivered.append((session_id, event))
        hub.publish(session_id, "alice", event.type, event)

    async with open_coach(router, hub, deliver, interval_s=30, clock=clock) as coach:
        assert coach.push("s1", "alice", {"pitch_accuracy": 0.4, "tempo": 0.9})
        assert not coach.push("s1", "alice", {"tempo": 0.2})  # within the interval
        await _until(lambda: delivered)
        await asyncio.sleep(0.1)
        assert len(delivered) == 1
        session_id, event = delivered[0]
        assert session_id == "s1"
        assert isinstance(event, CoachingFeedback)
        assert event.text
        # The tip was started by the first push, so it coaches what was known then.
        assert event.weakest_metric == "pitch_accuracy"
        assert coach.latest("s1") == {"pitch_accuracy": 0.4, "tempo": 0.2}
        clock.now += 31
        assert coach.push("s1", "alice", {"tempo": 0.3})
        await _until(lambda: len(delivered) == 2)
        second = delivered[1][1]
        assert isinstance(second, CoachingFeedback) and second.weakest_metric == "tempo"
    kinds = []
    while (item := await watcher.next(0.01)) is not None:
        kinds.append(item.type)
    assert kinds == ["metrics", "metrics", "coaching.feedback", "metrics", "coaching.feedback"]


async def test_tips_in_flight_are_bounded(fast_sim: Any, router: Router) -> None:
    await fast_sim.set_knobs(ttft_ms=300)
    hub = Hub(replay=8, queue_size=8)
    delivered: list[ServerEvent] = []
    async with open_coach(
        router, hub, lambda sid, ev: delivered.append(ev), interval_s=0, max_in_flight=2
    ) as coach:
        scheduled = [coach.push(f"s{i}", "u", {"m": 0.1}) for i in range(5)]
        assert scheduled == [True, True, False, False, False]
        assert coach.in_flight == 2
        assert not coach.push("s0", "u", {"m": 0.2})  # one in flight for s0 already
        await _until(lambda: coach.in_flight == 0)
        assert len(delivered) == 2


async def test_failed_tip_delivers_nothing(fast_sim: Any, router: Router) -> None:
    await fast_sim.set_knobs(fail_rate=1.0, fail_status=400)
    outcomes: list[str] = []
    delivered: list[ServerEvent] = []
    async with open_coach(
        router,
        Hub(),
        lambda sid, ev: delivered.append(ev),
        interval_s=0,
        on_outcome=outcomes.append,
    ) as coach:
        coach.push("s1", "u", {"m": 0.1})
        await _until(lambda: outcomes)
    assert outcomes == ["failed"] and not delivered
