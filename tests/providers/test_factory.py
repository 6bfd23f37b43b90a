"""Building adapters from configuration."""

from __future__ import annotations

from typing import Literal

import pytest

from gateway.settings import ProviderConfig
from providers.anthropic_chat import AnthropicChat
from providers.chat import ChatRequest, Message
from providers.factory import build_chat_provider
from providers.native_chat import NativeChat
from providers.openai_chat import OpenAIChat
from providers.sim import RunningSim


@pytest.mark.parametrize(
    ("client", "openai_type", "anthropic_type"),
    [("native", NativeChat, NativeChat), ("sdk", OpenAIChat, AnthropicChat)],
)
async def test_kinds_map_to_adapters(
    client: Literal["native", "sdk"], openai_type: type, anthropic_type: type
) -> None:
    built = {
        kind: build_chat_provider(
            kind, ProviderConfig(kind=kind, api_key="k", client=client), sim_url="http://x"
        )
        for kind in ("openai", "anthropic", "sim")
    }
    assert type(built["openai"]) is openai_type and built["openai"].kind == "openai"
    assert type(built["anthropic"]) is anthropic_type and built["anthropic"].kind == "anthropic"
    assert type(built["sim"]) is openai_type and built["sim"].kind == "sim"
    assert built["sim"].name == "sim"
    for provider in built.values():
        await provider.aclose()


def test_native_is_the_default_client() -> None:
    provider = build_chat_provider("p", ProviderConfig(kind="openai", api_key="k"), sim_url="")
    assert type(provider) is NativeChat


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
    config.client = "native"
    with pytest.raises(ValueError, match="unknown kind"):
        build_chat_provider("odd", config, sim_url="http://x")


def test_unknown_client_is_a_config_error() -> None:
    config = ProviderConfig.model_construct(kind="openai", api_key="k", client="curl")
    with pytest.raises(ValueError, match="unknown client"):
        build_chat_provider("odd", config, sim_url="http://x")
