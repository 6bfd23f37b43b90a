"""Building chat providers from configuration, without importing the gateway."""

from __future__ import annotations

from typing import Protocol

from providers.anthropic_chat import AnthropicChat
from providers.chat import ChatProvider
from providers.openai_chat import OpenAIChat

__all__ = ["ProviderSettings", "build_chat_provider"]

SIM_API_KEY = "sk-sim"


class ProviderSettings(Protocol):
    """What a provider's configuration must offer (`gateway.settings.ProviderConfig` does)."""

    @property
    def kind(self) -> str: ...

    @property
    def base_url(self) -> str | None: ...

    @property
    def api_key(self) -> str | None: ...

    @property
    def timeout_s(self) -> float: ...


def build_chat_provider(name: str, config: ProviderSettings, *, sim_url: str) -> ChatProvider:
    """The adapter for `config.kind`: "openai", "anthropic", or "sim" (OpenAI wire at the sim).

    Raises ValueError for an unknown kind or a real vendor without an API key.
    """
    if config.kind == "sim":
        base_url = config.base_url or f"{sim_url.rstrip('/')}/v1"
        api_key = config.api_key or SIM_API_KEY
        return OpenAIChat(
            name, api_key=api_key, base_url=base_url, timeout_s=config.timeout_s, kind="sim"
        )
    if config.kind not in ("openai", "anthropic"):
        raise ValueError(f"provider {name!r}: unknown kind {config.kind!r}")
    if not config.api_key:
        raise ValueError(f"provider {name!r} ({config.kind}) has no api_key")
    adapter = OpenAIChat if config.kind == "openai" else AnthropicChat
    return adapter(
        name, api_key=config.api_key, base_url=config.base_url, timeout_s=config.timeout_s
    )
