"""Building adapters from configuration."""

from __future__ import annotations

import pytest

from gateway.settings import ProviderConfig
from providers.anthropic_chat import AnthropicChat
from providers.chat import ChatRequest, Message
from providers.factory import build_chat_provider
from providers.openai_chat import OpenAIChat
from providers.sim import RunningSim


async def test_kinds_map_to_adapters() -> None:
    built = {
        kind: build_chat_provider(kind, ProviderConfig(kind=kind, api_key="k"), sim_url="http://x")
        for kind in ("openai", "anthropic", "sim")
    }
    assert type(built["openai"]) is OpenAIChat and built["openai"].kind == "openai"
    assert type(built["anthropic"]) is AnthropicChat and built["anthropic"].kind == "anthropic"
    assert type(built["sim"]) is OpenAIChat and built["sim"].kind == "sim"
    assert built["sim"].name == "sim"
    for provider in built.values():
        await provider.aclose()


async def test_sim_kind_needs_no_url_or_key(fresh_sim: RunningSim) -> None:
    provider = build_chat_provider("local", ProviderConfig(kind="sim"), sim_url=fresh_sim.url + "/")
    request = ChatRequest(model="sim-coach", messages=(Message("user", "hi"),))
    chunks = [chunk async for chunk in provider.stream(request)]
    await provider.aclose()
    assert chunks[-1].finish_reason == "stop"
    assert fresh_sim.stats()["by_endpoint"] == {"chat.completions": 1}


def test_real_vendor_without_key_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="no api_key"):
        build_chat_provider("openai", ProviderConfig(kind="openai"), sim_url="http://x")


def test_unknown_kind_is_a_config_error() -> None:
    config = ProviderConfig.model_construct(kind="mystery", base_url=None, api_key="k")
    with pytest.raises(ValueError, match="unknown kind"):
        build_chat_provider("odd", config, sim_url="http://x")
