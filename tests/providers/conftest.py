"""Fixtures for the chat adapters: a sim of their own and one adapter per kind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from providers.chat import ChatProvider
from providers.factory import build_chat_provider
from providers.sim import RunningSim, SimKnobs, running_sim

# Every knob at a known value: fast, fault free, default seed.
BASELINE: dict[str, Any] = {**SimKnobs().to_dict(), "ttft_ms": 1, "tokens_per_s": 0}

# Every adapter: each vendor kind over each client, and the sim kind over the default client.
CHAT_ADAPTERS = (
    ("openai", "native"),
    ("openai", "sdk"),
    ("anthropic", "native"),
    ("anthropic", "sdk"),
    ("sim", "native"),
)


@dataclass(frozen=True, slots=True)
class ProviderCfg:
    kind: str
    base_url: str | None = None
    api_key: str | None = "sk-test"
    timeout_s: float = 10.0
    client: str = "native"


def provider_cfg(kind: str, sim_url: str, **overrides: Any) -> ProviderCfg:
    base_url = {"openai": f"{sim_url}/v1", "anthropic": sim_url, "sim": None}[kind]
    return ProviderCfg(kind, **{"base_url": base_url, **overrides})


@pytest.fixture(scope="session")
async def chat_sim() -> AsyncIterator[RunningSim]:
    """A sim for this package alone, so its stats are not shared with other packages."""
    async with running_sim(SimKnobs(**BASELINE)) as server:
        yield server


@pytest.fixture
async def fresh_sim(chat_sim: RunningSim) -> AsyncIterator[RunningSim]:
    """The package sim with every knob at the baseline and zeroed stats."""
    await chat_sim.set_knobs(**BASELINE)
    chat_sim.reset_stats()
    yield chat_sim
    await chat_sim.set_knobs(**BASELINE)


MakeProvider = Callable[..., ChatProvider]


@pytest.fixture(params=CHAT_ADAPTERS, ids=[f"{k}-{c}" for k, c in CHAT_ADAPTERS])
async def make_provider(
    request: pytest.FixtureRequest, fresh_sim: RunningSim
) -> AsyncIterator[MakeProvider]:
    """Builds adapters of one kind and client against `fresh_sim`; closes them after the test."""
    kind, client = request.param
    made: list[ChatProvider] = []

    def make(**overrides: Any) -> ChatProvider:
        cfg = provider_cfg(kind, fresh_sim.url, **{"client": client, **overrides})
        provider = build_chat_provider(f"{kind}-under-test", cfg, sim_url=fresh_sim.url)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
