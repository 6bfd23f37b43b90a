"""Chat through the Anthropic Messages API.

JSON-schema requests use one forced tool (see `providers.wire`); its streamed input JSON is
yielded as the text of the answer.

As for OpenAI (see `providers.openai_chat`), the request goes through the SDK's generic `post`
and events come back as decoded JSON, with no pydantic model per event. The SDK still owns the
HTTP client, auth headers, SSE decoding (it drops `ping`s and raises on an `error` event) and
error classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import httpx2

from providers import wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import (
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["AnthropicChat", "map_anthropic_error"]

# The SDK does not wrap errors met while a stream is read: transport errors and undecodable
# SSE data (json.JSONDecodeError) arrive bare, an in-stream `error` event as APIStatusError.
_STREAM_ERRORS = (anthropic.AnthropicError, ValueError, httpx2.TransportError, httpx.TransportError)


class AnthropicChat(ChatProvider):
    """A streamed message per request; system messages go to `system=`; SDK retries are off."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        kind: str = "anthropic",
    ) -> None:
        self.name = name
        self.kind = kind
        self._closed = False
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self._closed:  # misuse, not an upstream failure: not a ProviderError
            raise RuntimeError(f"chat provider {self.name!r} is closed")
        body = wire.anthropic_params(request)
        try:
            response = await self._client.post(
                "/v1/messages",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=anthropic.AsyncStream[object],
            )
        except _STREAM_ERRORS as exc:
            raise map_anthropic_error(exc, self.name, streaming=False) from exc
        tally = wire.StreamTally(model=request.model)
        async with response:
            events = aiter(response)
            while True:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                except _STREAM_ERRORS as exc:
                    raise map_anthropic_error(exc, self.name, streaming=True) from exc
                try:
                    text = wire.anthropic_feed(tally, event)
                except MalformedResponse as exc:
                    raise MalformedResponse(f"{self.name}: {exc}", provider=self.name) from exc
                if text:
                    yield ChatChunk(text=text, model=tally.model)
        if not tally.finished:
            raise StreamInterrupted(
                "the stream ended without message_stop", status=200, provider=self.name
            )
        yield tally.final_chunk()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()


def map_anthropic_error(exc: Exception, provider: str, *, streaming: bool) -> ProviderError:
    """Our error for what the Anthropic SDK raised; `streaming` = the response had begun."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status < 400:  # an `error` event inside a 200 stream: its type names the status
            status = wire.status_of_anthropic_error(exc.body) or 500
        message = f"{provider}: HTTP {status}: {exc.message}"
        retry_after = wire.retry_after_seconds(exc.response.headers)
        return wire.error_for_status(status, message, provider=provider, retry_after_s=retry_after)
    if isinstance(
        exc, anthropic.APITimeoutError | httpx2.TimeoutException | httpx.TimeoutException
    ):
        return UpstreamTimeout(f"{provider}: upstream timed out", provider=provider)
    if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
        return MalformedResponse(f"{provider}: unparsable event: {exc}", provider=provider)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError | httpx.TransportError):
        if streaming:
            return StreamInterrupted(f"{provider}: connection lost mid-stream", provider=provider)
        return UpstreamUnavailable(f"{provider}: cannot reach upstream: {exc}", provider=provider)
    return UpstreamUnavailable(f"{provider}: {exc}", provider=provider)
