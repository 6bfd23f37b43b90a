"""Chat through the OpenAI API, or any server that speaks it (vLLM, Ollama, the sim, ...).

The request goes through the SDK's generic `post` with our JSON body, and chunks come back as
decoded JSON: `chat.completions.create` would run its typed-params transform over every message
and build a pydantic model per chunk, work that `providers.wire` does not need.
The SDK still owns the HTTP client, auth headers, base URL, SSE decoding and error classes.
"""

from __future__ import annotations

import httpx
import httpx2
import openai

from providers import wire
from providers.chat import ChatRequest
from providers.errors import (
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.sdk_chat import SdkChat, sdk_timeout

__all__ = ["OpenAIChat", "map_openai_error"]

# What the SDK lets escape while a stream is read: its own errors, undecodable SSE data
# (a bare json.JSONDecodeError) and, from some versions, transport errors.
_STREAM_ERRORS = (openai.OpenAIError, ValueError, httpx2.TransportError, httpx.TransportError)


class OpenAIChat(SdkChat):
    """A streamed chat completion per request, usage included; the SDK's retries are off."""

    _client: openai.AsyncOpenAI
    _stream_errors = _STREAM_ERRORS
    _end_marker = "a finish reason"

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        kind: str = "openai",
    ) -> None:
        super().__init__(name, kind, timeout_s)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=sdk_timeout(timeout_s)
        )

    async def _open(self, request: ChatRequest) -> openai.AsyncStream[object]:
        return await self._client.post(
            "/chat/completions",
            body=wire.openai_params(request),
            # as `chat.completions.create` asks: the API key as a bearer token, nothing else
            options={"security": {"bearer_auth": True}},
            cast_to=object,
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )

    def _feed(self, tally: wire.StreamTally, event: object) -> str:
        return wire.openai_feed(tally, event)

    def _map_error(self, exc: BaseException, *, streaming: bool) -> ProviderError:
        assert isinstance(exc, Exception)
        return map_openai_error(exc, self.name, streaming=streaming)


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
