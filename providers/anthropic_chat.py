"""Chat through the Anthropic Messages API.

JSON-schema requests use one forced tool (see `providers.wire`); its streamed input JSON is
yielded as the text of the answer.

As for OpenAI (see `providers.openai_chat`), the request goes through the SDK's generic `post`
and events come back as decoded JSON, with no pydantic model per event. The SDK still owns the
HTTP client, auth headers, SSE decoding (it drops `ping`s and raises on an `error` event) and
error classes.
"""

from __future__ import annotations

import anthropic
import httpx
import httpx2

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

__all__ = ["AnthropicChat", "map_anthropic_error"]

# The SDK does not wrap errors met while a stream is read: transport errors and undecodable
# SSE data (json.JSONDecodeError) arrive bare, an in-stream `error` event as APIStatusError.
_STREAM_ERRORS = (anthropic.AnthropicError, ValueError, httpx2.TransportError, httpx.TransportError)


class AnthropicChat(SdkChat):
    """A streamed message per request; system messages go to `system=`; SDK retries are off."""

    _client: anthropic.AsyncAnthropic
    _stream_errors = _STREAM_ERRORS
    _end_marker = "message_stop"

    def __init__(
        self,
        name: str,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        kind: str = "anthropic",
    ) -> None:
        super().__init__(name, kind, timeout_s)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=sdk_timeout(timeout_s)
        )

    async def _open(self, request: ChatRequest) -> anthropic.AsyncStream[object]:
        return await self._client.post(
            "/v1/messages",
            body=wire.anthropic_params(request),
            cast_to=object,
            stream=True,
            stream_cls=anthropic.AsyncStream[object],
        )

    def _feed(self, tally: wire.StreamTally, event: object) -> str:
        return wire.anthropic_feed(tally, event)

    def _map_error(self, exc: BaseException, *, streaming: bool) -> ProviderError:
        assert isinstance(exc, Exception)
        return map_anthropic_error(exc, self.name, streaming=streaming)


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
