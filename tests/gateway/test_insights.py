"""`GET /v1/insights` and `POST /v1/insights/{type}` on the whole gateway (real uvicorn, real
Postgres, the simulated upstream over HTTP): the list with nulls and after a post, the cache and
refresh, the fallback with the user's facts filled in, unknown types, per-user isolation, facts
from seeded data, and `insight.created` pushed to the user's live sessions only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from assess.facts import Facts, user_facts
from db.focuses import set_active_focuses
from db.pool import Pool
from gateway.insight_jobs import fallback_values, insight_job
from gateway.server import RunningGateway, running_gateway
from gateway.settings import Settings
from streams.records import SessionInfo
from streams.session import SessionRegistry
from tests.conftest import make_settings
from tests.db.test_facts import error, seed_assessment, seed_session, seed_turn
from tests.gateway.wsclient import ws_client
from tests.pg import database_dsn, server_dsn

__all__ = ["database_dsn", "server_dsn"]

Token = Callable[..., str]

SHIPPED = [
    "daily_summary",
    "weekly_review",
    "performance_tip",
    "milestone_celebration",
    "streak_motivation",
    "session_recap",
]
FALLBACK = "Sessions {sessions_7d}, minutes {minutes_7d}, streak {streak_days}, error {top_error}"


@pytest.fixture
async def stack(fast_sim: Any, database_dsn: str, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway per test: a test's failing upstream must not leave its breakers open."""
    insights = {
        "streak_motivation": {"fallback": FALLBACK},
        "pitch_check": {"prompt": "Check the pitch.", "fallback": "Keep at it."},
    }
    settings = make_settings(
        fast_sim.url,
        tmp_path,
        persistence=True,
        database_url=database_dsn,
        insights=insights,
    )
    async with running_gateway(settings) as running:
        yield running


def pool_of(stack: RunningGateway) -> Pool:
    persistence = stack.app.state.gateway.persistence
    assert persistence is not None
    pool: Pool = persistence.pool
    return pool


def http(stack: RunningGateway, token: Token, user: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token(user)}"}
    return httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=20)


async def seed_practice(pool: Pool, user: str) -> None:
    """Two sessions this week (50 minutes), turns on three days in a row, two error keys."""
    recent = await seed_session(pool, user, "2 days", "47 hours 30 minutes")
    today = await seed_session(pool, user, "1 hour", "40 minutes")
    for ago in ("10 minutes", "1 day", "2 days"):
        await seed_turn(pool, user, today if ago == "10 minutes" else recent, ago)
    await seed_assessment(pool, user, today, errors=[error("rushed_close"), error("filler_um")])
    await seed_assessment(pool, user, recent, errors=[error("rushed_close")])
    await seed_assessment(pool, user, today, focus="pacing", score=5)
    await set_active_focuses(pool, user, ["pacing"])


async def test_the_list_has_every_type_with_null_then_the_latest(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with http(stack, token, "in-ann") as client:
        before = await client.get("/v1/insights")
        made = await client.post("/v1/insights/daily_summary")
        after = (await client.get("/v1/insights")).json()["insights"]
    assert before.status_code == 200, before.text
    listed = before.json()["insights"]
    assert [i["type"] for i in listed] == [*SHIPPED, "pitch_check"]
    assert all(i["latest"] is None for i in listed)
    assert made.status_code == 200, made.text
    insight = made.json()["insight"]
    assert insight["type"] == "daily_summary" and insight["source"] == "model"
    assert insight["text"] and len(insight["text"]) <= 600
    assert insight["expires_at"] > insight["created_at"]
    latest = {i["type"]: i["latest"] for i in after}
    assert latest["daily_summary"] == insight
    assert all(latest[k] is None for k in latest if k != "daily_summary")


async def test_a_cached_insight_until_refreshed(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with http(stack, token, "in-bea") as client:
        first = (await client.post("/v1/insights/performance_tip")).json()["insight"]
        calls = sum(fast_sim.stats()["by_endpoint"].values())
        again = (await client.post("/v1/insights/performance_tip")).json()["insight"]
        assert (
            sum(fast_sim.stats()["by_endpoint"].values()) == calls
        )  # a cache hit calls no upstream
        fresh = (await client.post("/v1/insights/performance_tip?refresh=true")).json()
        bad = await client.post("/v1/insights/performance_tip?refresh=maybe")
    assert first["source"] == "model"
    assert again["source"] == "cache" and again["id"] == first["id"]
    assert again["text"] == first["text"] and again["created_at"] == first["created_at"]
    assert fresh["insight"]["source"] == "model" and fresh["insight"]["id"] != first["id"]
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"


async def test_facts_in_the_answer_are_the_users_seeded_data(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    pool = pool_of(stack)
    await seed_practice(pool, "in-cid")
    async with http(stack, token, "in-cid") as client:
        insight = (await client.post("/v1/insights/weekly_review")).json()["insight"]
    facts = insight["facts"]
    assert facts == (await user_facts(pool, "in-cid")).to_json()
    assert facts["sessions_7d"] == 2 and facts["minutes_7d"] == pytest.approx(50, abs=0.1)
    assert facts["streak_days"] == 3
    assert facts["top_errors"] == [
        {"key": "rushed_close", "count": 2},
        {"key": "filler_um", "count": 1},
    ]
    pacing = next(f for f in facts["focus_levels"] if f["focus_id"] == "pacing")
    assert pacing["level"] == 5 and pacing["samples"] == 1


async def test_every_target_failing_gives_the_fallback_with_facts_filled_in(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    await seed_practice(pool_of(stack), "in-dan")
    await fast_sim.set_knobs(fail_rate=1.0)
    async with http(stack, token, "in-dan") as client:
        reply = await client.post("/v1/insights/streak_motivation")
        again = (await client.post("/v1/insights/streak_motivation")).json()["insight"]
    assert reply.status_code == 200, reply.text
    insight = reply.json()["insight"]
    assert insight["source"] == "fallback"
    assert insight["text"] == "Sessions 2, minutes 50, streak 3, error rushed_close"
    assert insight["facts"]["sessions_7d"] == 2
    assert again["source"] == "fallback" and again["id"] != insight["id"]  # never cached


async def test_an_unknown_type_is_a_404_listing_the_known_ones(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with http(stack, token, "in-eve") as client:
        reply = await client.post("/v1/insights/horoscope")
    assert reply.status_code == 404
    problem = reply.json()["error"]
    assert problem["code"] == "unknown_insight_type"
    assert all(kind in problem["message"] for kind in [*SHIPPED, "pitch_check"])
    assert "horoscope" not in problem["message"]


async def test_another_users_insight_is_never_visible(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with http(stack, token, "in-fay") as fay, http(stack, token, "in-gus") as gus:
        mine = (await fay.post("/v1/insights/milestone_celebration")).json()["insight"]
        listed = (await gus.get("/v1/insights")).json()["insights"]
        theirs = (await gus.post("/v1/insights/milestone_celebration")).json()["insight"]
    assert all(i["latest"] is None for i in listed)
    assert theirs["source"] == "model" and theirs["id"] != mine["id"]


async def test_insight_created_reaches_the_users_sockets_only(
    fast_sim: Any, stack: RunningGateway, token: Token
) -> None:
    async with (
        ws_client(stack.ws_url, token("in-hal")) as hal,
        ws_client(stack.ws_url, token("in-ivy")) as ivy,
        http(stack, token, "in-hal") as hal_http,
        http(stack, token, "in-ivy") as ivy_http,
    ):
        await hal.until("session.created")
        await ivy.until("session.created")
        made = (await hal_http.post("/v1/insights/daily_summary")).json()["insight"]
        pushed = (await hal.until("insight.created"))[-1]["insight"]
        cached = (await hal_http.post("/v1/insights/daily_summary")).json()["insight"]
        theirs = (await ivy_http.post("/v1/insights/session_recap")).json()["insight"]
        # Ivy's first insight event is her own: Hal's never reached her socket.
        ivy_events = await ivy.until("insight.created")
        refreshed = (await hal_http.post("/v1/insights/daily_summary?refresh=true")).json()
        # The cached answer pushed nothing: Hal's next event is the refreshed one.
        next_push = (await hal.until("insight.created"))[-1]["insight"]
    assert pushed == made
    assert cached["source"] == "cache"
    assert [e["insight"] for e in ivy_events if e["type"] == "insight.created"] == [theirs]
    assert next_push == refreshed["insight"]


def test_the_fallback_fills_known_facts_only() -> None:
    settings = insight_settings({"daily_summary": {"fallback": "Top: {top_error}."}})
    facts = Facts(1, 12.4, 0, (), ())
    job = insight_job("u1", "daily_summary", settings.insights["daily_summary"], facts)
    assert job.fallback()["text"] == "Top: none."
    assert fallback_values(facts)["minutes_7d"] == 12
    with pytest.raises(ValueError, match="unknown facts"):
        insight_settings({"daily_summary": {"fallback": "{user_id} {sessions_7d.__class__}"}})
    with pytest.raises(ValueError, match="five-field cron"):
        insight_settings({"daily_summary": {"schedule": "0 0 20 * * *"}})
    with pytest.raises(ValueError, match="prompt"):
        insight_settings({"new_type": {"fallback": "x"}})


def insight_settings(insights: dict[str, Any]) -> Settings:
    """Settings with `[insights]` as a TOML file would give them (merged over the shipped)."""
    return Settings.model_validate({"insights": insights})


def test_the_registry_knows_each_users_live_sessions() -> None:
    registry = SessionRegistry(history_turns=4)
    sinks = [lambda event: None for _ in range(3)]
    first = registry.attach(SessionInfo("s1", "ann", False), sinks[0])
    again = registry.attach(SessionInfo("s1", "ann", True), sinks[1])
    registry.attach(SessionInfo("s2", "ann", False), sinks[2])
    registry.attach(SessionInfo("s3", "bob", False), lambda event: None)
    assert registry.sessions_of("ann") == ["s1", "s2"]
    registry.detach(first, sinks[0])
    assert registry.sessions_of("ann") == ["s1", "s2"]  # s1 still has a connection
    registry.detach(again, sinks[1])
    assert registry.sessions_of("ann") == ["s2"] and registry.sessions_of("bob") == ["s3"]
    assert registry.sessions_of("cid") == []
