"""The read loop the SDK chat adapters share: open a stream with the vendor's client, feed each
decoded event to `providers.wire`, translate every vendor error at the boundary, and insist on
the vendor's finish marker."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Protocol

from providers import wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import MalformedResponse, ProviderError, StreamInterrupted

__all__ = ["SdkChat"]


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

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
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
            response = await self._open(request)
        except self._stream_errors as exc:
            raise self._map_error(exc, streaming=False) from exc
        tally = wire.StreamTally(model=request.model)
        async with response:
            events = aiter(response)
            while True:
                try:
                    event = await anext(events)
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
        if not tally.finished:
            raise StreamInterrupted(
                f"the stream ended without {self._end_marker}", status=200, provider=self.name
            )
        yield tally.final_chunk()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()
