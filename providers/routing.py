"""Routes: ordered targets (provider, model) per purpose, with failover before the first token.

INTERIM: a plain in-order failover so the core can run. The resilience issue replaces the body
of `Router` (breakers, retries with jittered backoff, deadlines, budgets) behind this interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import NoRouteAvailable, ProviderError

__all__ = ["Fallback", "RoutedStream", "Router", "Target"]


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str

    @classmethod
    def parse(cls, spec: str) -> Target:
        """`"primary:gpt-4o-mini"` -> Target("primary", "gpt-4o-mini")."""
        provider, sep, model = spec.partition(":")
        if not sep or not provider or not model:
            raise ValueError(f"route target must be 'provider:model', got {spec!r}")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class Fallback:
    """A target that was tried and given up on before the first token."""

    target: str
    code: str
    status: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {"target": self.target, "code": self.code, "status": self.status}


@dataclass(slots=True)
class RoutedStream:
    """An upstream stream that has already produced its first chunk (failover is over)."""

    target: Target
    provider_kind: str
    fallbacks: list[Fallback]
    upstream_ttft_ms: float
    _first: ChatChunk
    _rest: AsyncIterator[ChatChunk]
    cost_usd: float = 0.0
    _closed: bool = field(default=False)

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        yield self._first
        async for chunk in self._rest:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            aclose = getattr(self._rest, "aclose", None)
            if aclose is not None:
                await aclose()


class Router:
    """Opens a stream on the first target of a route that answers."""

    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        routes: Mapping[str, Sequence[Target]],
    ) -> None:
        self._providers = dict(providers)
        self._routes = {name: list(targets) for name, targets in routes.items()}

    def targets(self, route: str) -> list[Target]:
        return list(self._routes.get(route, []))

    async def open_stream(
        self, route: str, request: ChatRequest, *, model: str | None = None
    ) -> RoutedStream:
        """Open `request` on `route`; `model`, if set, keeps only targets serving that model."""
        fallbacks: list[Fallback] = []
        targets = [t for t in self.targets(route) if model is None or t.model == model]
        for target in targets:
            provider = self._providers[target.provider]
            started = time.perf_counter()
            stream = provider.stream(replace(request, model=target.model))
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                fallbacks.append(Fallback(str(target), "empty_stream"))
                continue
            except ProviderError as exc:
                await stream.aclose()  # type: ignore[attr-defined]
                if not exc.transient:
                    fallbacks.append(Fallback(str(target), exc.code, exc.status))
                    continue
                fallbacks.append(Fallback(str(target), exc.code, exc.status))
                continue
            ttft = (time.perf_counter() - started) * 1000
            return RoutedStream(target, provider.kind, fallbacks, ttft, first, stream)
        raise NoRouteAvailable(f"no target of route {route!r} answered", provider=route)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
