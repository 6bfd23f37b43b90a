"""Fixtures shared by every test package: the simulated upstream and a gateway on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import mint_token
from gateway.server import RunningGateway, running_gateway
from gateway.settings import Settings
from providers.sim import SimKnobs, running_sim

TEST_SECRET = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="session")
async def sim() -> AsyncIterator[Any]:
    """One simulated upstream for the whole run; tests that change knobs reset them."""
    async with running_sim() as server:
        yield server


@pytest.fixture
async def fast_sim(sim: Any) -> AsyncIterator[Any]:
    """The shared sim with default, fast, fault-free knobs, restored after the test."""
    await sim.set_knobs(**FAST_KNOBS)
    yield sim
    await sim.set_knobs(**FAST_KNOBS)


# Every knob at its default (no faults), but with a quick first token and no pacing.
FAST_KNOBS: dict[str, Any] = {**asdict(SimKnobs()), "ttft_ms": 5, "tokens_per_s": 0}


def make_settings(sim_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "jwt_secret": TEST_SECRET,
        "sim_url": sim_url,
        "data_dir": tmp_path,
        "persistence": False,
        "allowed_origins": ["http://allowed.example"],
        "shutdown_grace_s": 2.0,
        # Off unless a test is about it: a scheduled tick (e.g. the 20:00 daily summary) must
        # not push insights into tests that run at that hour.
        "scheduler": {"enabled": False},
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def token() -> Callable[..., str]:
    def _token(user: str = "alice", roles: list[str] | None = None, ttl_s: int = 600) -> str:
        return mint_token(TEST_SECRET, user, roles=roles, ttl_s=ttl_s)

    return _token


@pytest.fixture
async def gateway(fast_sim: Any, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(fast_sim.url, tmp_path)) as running:
        yield running


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> None:
    """Wait until `check()` holds, polling (what is watched has no event to wait on); fails
    the test with TimeoutError when it never does."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)
