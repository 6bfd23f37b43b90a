"""The read loop the SDK chat adapters share: open a stream with the vendor's client, feed each
decoded event to `providers.wire`, translate every vendor error at the boundary, and insist on
the vendor's finish marker.

As for the native client, `timeout_s` bounds connecting, the response's head and its first
event; the waits for later events are the caller's to bound (the router's stall deadline, the
one of the stream), so the SDK's client is given no read timeout (`sdk_timeout`).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Protocol

import httpx2

from providers import wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import MalformedResponse, ProviderError, StreamInterrupted, UpstreamTimeout

__all__ = ["SdkChat", "sdk_timeout"]


def sdk_timeout(timeout_s: float) -> httpx2.Timeout:
    """The SDK client's timeouts: `timeout_s` for connecting, writing and a pooled connection;
    none for reads (`SdkChat.stream` bounds the head and the first event itself)."""
    return httpx2.Timeout(timeout_s, read=None)


class _EventStream(Protocol):
    """What `client.post(..., stream=True)` returns: an async iterator and context manager."""

    def __aiter__(self) -> AsyncIterator[object]: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any: ...


class SdkClient(Protocol):
    async def close(self) -> None: ...


class SdkChat(ChatProvider):
    """A chat adapter over an official SDK client (`_client`), with its retries off."""

    _client: SdkClient
    _stream_errors: tuple[type[BaseException], ...]
    _end_marker: str  # the vendor's name for its finish marker, for error messages

    def __init__(self, name: str, kind: str, timeout_s: float) -> None:
        self.name = name
        self.kind = kind
        self._timeout_s = timeout_s
        self._closed = False

    @abstractmethod
    async def _open(self, request: ChatRequest) -> _EventStream:
        """Send the request; the stream of decoded events."""

    @abstractmethod
    def _feed(self, tally: wire.StreamTally, event: object) -> str:
        """Record one event; its text delta ("" when none)."""

    @abstractmethod
    def _map_error(self, exc: BaseException, *, streaming: bool) -> ProviderError:
        """Our error for what the SDK raised; `streaming` = the response had begun."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self._closed:  # misuse, not an upstream failure: not a ProviderError
            raise RuntimeError(f"chat provider {self.name!r} is closed")
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._open(request)
        except self._stream_errors as exc:
            raise self._map_error(exc, streaming=False) from exc
        except TimeoutError as exc:
            raise self._timed_out() from exc
        tally = wire.StreamTally.for_request(request)
        async with response:
            events = aiter(response)
            next_event: Awaitable[object] = self._first_event(events)
            while True:
                try:
                    event = await next_event
                except StopAsyncIteration:
                    break
                except self._stream_errors as exc:
                    raise self._map_error(exc, streaming=True) from exc
                try:
                    text = self._feed(tally, event)
                except MalformedResponse as exc:
                    raise MalformedResponse(f"{self.name}: {exc}", provider=self.name) from exc
                if text:
                    yield ChatChunk(text=text, model=tally.model)
                next_event = anext(events)
        if not tally.finished:
            raise StreamInterrupted(
                f"the stream ended without {self._end_marker}", status=200, provider=self.name
            )
        try:
            final = tally.final_chunk()
        except MalformedResponse as exc:  # a tool call left unfinished
            raise MalformedResponse(f"{self.name}: {exc}", provider=self.name) from exc
        yield final

    async def _first_event(self, events: AsyncIterator[object]) -> object:
        """The stream's first event, within `timeout_s` as the head was (one timer per call)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await anext(events)
        except TimeoutError as exc:
            raise self._timed_out() from exc

    def _timed_out(self) -> UpstreamTimeout:
        return UpstreamTimeout(f"{self.name}: upstream timed out", provider=self.name)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()
