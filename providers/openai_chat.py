"""Chat through the OpenAI API, or any server that speaks it (vLLM, Ollama, the sim, ...).

The request goes through the SDK's generic `post` with our JSON body, and chunks come back as
decoded JSON: `chat.completions.create` would run its typed-params transform (about 1.3 ms of
CPU per message) and build a pydantic model per chunk, work that `providers.wire` does not need.
The SDK still owns the HTTP client, auth headers, base URL, SSE decoding and error classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import openai

from providers import wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import (
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["OpenAIChat", "map_openai_error"]

# What the SDK lets escape while a stream is read: its own errors, undecodable SSE data
# (a bare json.JSONDecodeError) and, from some versions, transport errors.
_STREAM_ERRORS = (openai.OpenAIError, ValueError, httpx2.TransportError, httpx.TransportError)


class OpenAIChat(ChatProvider):
    """A streamed chat completion per request, usage included; the SDK's retries are off."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        kind: str = "openai",
    ) -> None:
        self.name = name
        self.kind = kind
        self._closed = False
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self._closed:  # misuse, not an upstream failure: not a ProviderError
            raise RuntimeError(f"chat provider {self.name!r} is closed")
        body = wire.openai_params(request)
        try:
            response = await self._client.post(
                "/chat/completions",
                body=body,
                # as `chat.completions.create` asks: the API key as a bearer token, nothing else
                options={"security": {"bearer_auth": True}},
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
        except _STREAM_ERRORS as exc:
            raise map_openai_error(exc, self.name, streaming=False) from exc
        tally = wire.StreamTally(model=request.model)
        async with response:
            chunks = aiter(response)
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except _STREAM_ERRORS as exc:
                    raise map_openai_error(exc, self.name, streaming=True) from exc
                try:
                    text = wire.openai_feed(tally, chunk)
                except MalformedResponse as exc:
                    raise MalformedResponse(f"{self.name}: {exc}", provider=self.name) from exc
                if text:
                    yield ChatChunk(text=text, model=tally.model)
        if not tally.finished:
            raise StreamInterrupted(
                "the stream ended without a finish reason", status=200, provider=self.name
            )
        yield tally.final_chunk()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()


def map_openai_error(exc: Exception, provider: str, *, streaming: bool) -> ProviderError:
    """Our error for what the OpenAI SDK raised; `streaming` = the response had begun."""
    if isinstance(exc, openai.APIStatusError):
        message = f"{provider}: HTTP {exc.status_code}: {exc.message}"
        retry_after = wire.retry_after_seconds(exc.response.headers)
        return wire.error_for_status(
            exc.status_code, message, provider=provider, retry_after_s=retry_after
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | httpx.TimeoutException):
        return UpstreamTimeout(f"{provider}: upstream timed out", provider=provider)
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return MalformedResponse(f"{provider}: unparsable chunk: {exc}", provider=provider)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | httpx.TransportError):
        if streaming:
            return StreamInterrupted(f"{provider}: connection lost mid-stream", provider=provider)
        return UpstreamUnavailable(f"{provider}: cannot reach upstream: {exc}", provider=provider)
    return UpstreamUnavailable(f"{provider}: {exc}", provider=provider)
