"""Quota tiers: `[quotas.tiers.NAME]` chosen by the token's `tier` claim."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import jwt
import pytest

from gateway.auth import Authenticator, mint_token
from gateway.errors import ApiError
from gateway.quotas import QuotaExceeded, Quotas
from gateway.settings import QuotaSettings, QuotaTier, Settings
from tests.conftest import TEST_SECRET

LIMITS = QuotaSettings(
    turns_per_minute=2,
    concurrent_streams=1,
    tiers={"pro": QuotaTier(turns_per_minute=4), "solo": QuotaTier(connections=1)},
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def quotas() -> AsyncIterator[Quotas]:
    opened = await Quotas.open(LIMITS, None, clock=FakeClock(), log_sample_interval_s=60)
    yield opened
    await opened.aclose()


async def _turns(quotas: Quotas, user: str) -> int:
    """How many turns the user may start this minute."""
    for taken in range(100):
        try:
            await quotas.check_turn(user)
        except QuotaExceeded as exc:
            assert exc.scope == "turns_per_minute"
            return taken
    return 100


async def test_a_tier_sets_its_limits_and_inherits_the_rest(quotas: Quotas) -> None:
    quotas.assign_tier("paula", "pro")
    assert await _turns(quotas, "paula") == 4
    assert await _turns(quotas, "dan") == 2  # no tier: the top-level limits
    assert quotas.limits("paula").concurrent_streams == 1  # not set by `pro`: inherited
    assert quotas.limits("paula").tiers == {}


async def test_the_latest_token_decides_and_no_tier_is_the_default(quotas: Quotas) -> None:
    quotas.assign_tier("paula", "pro")
    quotas.assign_tier("paula", None)
    assert await _turns(quotas, "paula") == 2


async def test_an_unknown_tier_gets_the_default_limits_and_one_log_line(
    quotas: Quotas, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="coach.quota"):
        for _ in range(5):
            quotas.assign_tier("nora", "platinum")
    assert await _turns(quotas, "nora") == 2
    lines = [r.getMessage() for r in caplog.records if "platinum" in r.getMessage()]
    assert lines == ["token tier 'platinum' is not configured; default limits apply"]


async def test_the_tier_claim_reaches_the_principal() -> None:
    auth = Authenticator(secret=TEST_SECRET)
    assert (await auth.verify(mint_token(TEST_SECRET, "paula", tier="pro"))).tier == "pro"
    assert (await auth.verify(mint_token(TEST_SECRET, "dan"))).tier is None
    odd = jwt.encode({"sub": "x", "exp": 4_000_000_000, "tier": 5}, TEST_SECRET)
    with pytest.raises(ApiError) as info:
        await auth.verify(odd)
    assert info.value.status == 401


def test_tiers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COACH_QUOTAS__TIERS__PRO__TURNS_PER_MINUTE", "40")
    settings = Settings(jwt_secret=TEST_SECRET)
    assert settings.quotas.for_tier("pro").turns_per_minute == 40
    assert "tiers" not in settings.public_limits()
