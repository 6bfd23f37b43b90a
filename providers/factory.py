"""Building chat providers from configuration, without importing the gateway."""

from __future__ import annotations

from typing import Protocol

from providers.anthropic_chat import AnthropicChat
from providers.chat import ChatProvider
from providers.native_chat import ANTHROPIC, OPENAI, NativeChat
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

    @property
    def client(self) -> str: ...


def build_chat_provider(name: str, config: ProviderSettings, *, sim_url: str) -> ChatProvider:
    """The adapter for `config.kind`: "openai", "anthropic", or "sim" (OpenAI wire at the sim),
    over `config.client`: "native" (`providers.http_stream`, the fast path) or "sdk" (the
    vendor's SDK).

    Raises ValueError for an unknown kind or client, or a real vendor without an API key.
    """
    if config.client not in ("native", "sdk"):
        raise ValueError(f"provider {name!r}: unknown client {config.client!r}")
    kind, base_url, api_key = config.kind, config.base_url, config.api_key
    if kind == "sim":
        base_url = base_url or f"{sim_url.rstrip('/')}/v1"
        api_key = api_key or SIM_API_KEY
    elif kind not in ("openai", "anthropic"):
        raise ValueError(f"provider {name!r}: unknown kind {kind!r}")
    elif not api_key:
        raise ValueError(f"provider {name!r} ({kind}) has no api_key")
    timeout_s = config.timeout_s
    if config.client == "native":
        dialect = ANTHROPIC if kind == "anthropic" else OPENAI
        return NativeChat(
            name, dialect, api_key=api_key, base_url=base_url, timeout_s=timeout_s, kind=kind
        )
    adapter = AnthropicChat if kind == "anthropic" else OpenAIChat
    return adapter(name, api_key=api_key, base_url=base_url, timeout_s=timeout_s, kind=kind)
