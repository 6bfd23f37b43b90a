"""Chat over plain HTTP (`providers.http_stream`) in the OpenAI or Anthropic wire format, with
orjson.

The streaming hot path of the gateway: per turn and per streamed chunk it costs a fraction of
the CPU of the official SDK clients (`python -m loadtests.micro.adapters`; figures in
loadtests/BENCHMARKS.md).
The SDK adapters (`providers.openai_chat`, `providers.anthropic_chat`) stay available as
`client = "sdk"`; both kinds pass the same conformance suite against the sim, and both use the
pure conversions of `providers.wire`.

A JSON-schema request (the assessor's, the skills') is read whole by its caller, so it is
asked for unstreamed: one JSON response, read at once (`NativeChat._answer`), instead of a
server-sent event per token to read, parse and hold back; its chunks are the same as a
stream's, the text (all of it) then the final chunk.

A `Dialect` holds what differs between the vendors: the path, the auth headers, the request
body, how one server-sent event is read and how a whole answer is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol

import orjson

from providers import wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest
from providers.errors import (
    MalformedResponse,
    ProviderError,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.http_stream import HttpStatusError, HttpStream, HttpStreamError, Response
from providers.sse import SseDecoder, SseEvent

__all__ = ["ANTHROPIC", "OPENAI", "Dialect", "NativeChat"]

ANTHROPIC_VERSION = "2023-06-01"
# As the SDKs allow: connections to one upstream at once, beyond which a request waits for one.
MAX_CONNECTIONS = 1000
# How much, and how long, to read after the stream's last event to keep its connection
# (`_read_to_end`): the end of the body, which comes at once from the servers known.
_TRAILING_BYTES = 64 * 1024
_TRAILING_WAIT_S = 1.0
# Of an error response's body, what is read for its message.
_ERROR_BODY_BYTES = 64 * 1024
# The most of an unstreamed answer read: a body beyond it is no answer of ours (an assessment
# is a few KiB) and is refused rather than buffered.
_ANSWER_BYTES = 4 * 1024 * 1024


class _Params(Protocol):
    def __call__(self, request: ChatRequest, *, stream: bool = True) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """One vendor's wire format."""

    name: str
    default_base_url: str
    path: str
    end_marker: str  # for error messages
    auth_headers: Callable[[str], dict[str, str]]
    params: _Params
    # One event -> its text delta ("" when none), or None for the end-of-stream event (OpenAI's
    # `[DONE]`, Anthropic's `message_stop`); raises ProviderError.
    read_event: Callable[[wire.StreamTally, SseEvent, str], str | None]
    # A whole (unstreamed) answer, decoded -> its text; raises ProviderError.
    read_answer: Callable[[wire.StreamTally, object, str], str]


def _openai_event(tally: wire.StreamTally, event: SseEvent, provider: str) -> str | None:
    if event.data.startswith(b"[DONE]"):
        return None
    chunk = _json(event.data, provider)
    if isinstance(chunk, dict) and (error := chunk.get("error")) is not None:
        # An error line inside a 200 stream (vLLM, LiteLLM and OpenAI itself send these).
        raise _stream_error(error, provider, status=_int(error, "code") or 500)
    return wire.openai_feed(tally, chunk)


def _anthropic_event(tally: wire.StreamTally, event: SseEvent, provider: str) -> str | None:
    if event.event == "ping":
        return ""
    body = _json(event.data, provider)
    if event.event == "error":
        status = wire.status_of_anthropic_error(body) or 500
        error = body.get("error", body) if isinstance(body, dict) else body
        raise _stream_error(error, provider, status=status)
    text = wire.anthropic_feed(tally, body)
    return None if event.event == "message_stop" else text


def _openai_answer(tally: wire.StreamTally, body: object, provider: str) -> str:
    if isinstance(body, dict) and (error := body.get("error")) is not None:
        raise _stream_error(error, provider, status=_int(error, "code") or 500)
    return wire.openai_answer(tally, body)


def _anthropic_answer(tally: wire.StreamTally, body: object, provider: str) -> str:
    if isinstance(body, dict) and body.get("type") == "error":
        status = wire.status_of_anthropic_error(body) or 500
        raise _stream_error(body.get("error", body), provider, status=status)
    return wire.anthropic_answer(tally, body)


OPENAI = Dialect(
    name="openai",
    default_base_url="https://api.openai.com/v1",
    path="/chat/completions",
    end_marker="a finish reason",
    auth_headers=lambda key: {"Authorization": f"Bearer {key}"},
    params=wire.openai_params,
    read_event=_openai_event,
    read_answer=_openai_answer,
)

ANTHROPIC = Dialect(
    name="anthropic",
    default_base_url="https://api.anthropic.com",
    path="/v1/messages",
    end_marker="message_stop",
    auth_headers=lambda key: {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION},
    params=wire.anthropic_params,
    read_event=_anthropic_event,
    read_answer=_anthropic_answer,
)


class NativeChat(ChatProvider):
    """A chat request per call over pooled keep-alive connections (`HttpStream`), streamed
    unless it asks for a JSON-schema answer; no retries (the router owns them). `timeout_s`
    bounds connecting, the wait for the response's head and for its first bytes (of an
    unstreamed answer, for its whole body); later waits are the caller's to bound (the router's
    stall deadline, one per stream, whatever adapter serves it)."""

    def __init__(
        self,
        name: str,
        dialect: Dialect,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        kind: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind or dialect.name
        self._dialect = dialect
        self._url = (base_url or dialect.default_base_url).rstrip("/") + dialect.path
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream, application/json",
            "User-Agent": "coach-gateway",
            **dialect.auth_headers(api_key),
        }
        self._timeout_s = timeout_s
        # Made now, at start-up (an https:// one loads the trust store); its connections are
        # opened on use, in the running event loop.
        self._http = HttpStream(
            self._url, self._headers, connect_timeout_s=timeout_s, max_connections=MAX_CONNECTIONS
        )
        self._closed = False

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if self._closed:  # misuse, not an upstream failure: not a ProviderError
            raise RuntimeError(f"chat provider {self.name!r} is closed")
        if request.json_schema is not None:
            for chunk in await self._answer(request):
                yield chunk
            return
        response = await self._post(request, stream=True)
        try:
            tally = wire.StreamTally.for_request(request)
            # One loop, no inner generator: this runs once per streamed chunk.
            decoder = SseDecoder()
            read_event = self._dialect.read_event
            data = await self._first_read(response)
            while True:
                done = not data
                for event in decoder.feed(data) if data else decoder.flush():
                    try:
                        text = read_event(tally, event, self.name)
                    except MalformedResponse as exc:
                        message = f"{self.name}: {exc}"
                        raise MalformedResponse(message, provider=self.name) from exc
                    if text is None:
                        done = True
                        break
                    if text:
                        yield ChatChunk(text=text, model=tally.model)
                if done:
                    break
                try:
                    data = await response.read()
                except HttpStreamError as exc:
                    raise self._transport_error(exc, streaming=True) from exc
            await _read_to_end(response)
        finally:
            response.release()
        if not tally.finished:
            raise StreamInterrupted(
                f"{self.name}: the stream ended without {self._dialect.end_marker}",
                status=200,
                provider=self.name,
            )
        try:
            final = tally.final_chunk()
        except MalformedResponse as exc:  # a tool call left unfinished
            raise MalformedResponse(f"{self.name}: {exc}", provider=self.name) from exc
        yield final

    async def _answer(self, request: ChatRequest) -> tuple[ChatChunk, ...]:
        """A whole, unstreamed answer: its text chunk (if any) and its final chunk."""
        response = await self._post(request, stream=False)
        try:
            raw = await self._read_answer(response)
        finally:
            response.release()
        tally = wire.StreamTally.for_request(request)
        decoded = _json(raw, self.name, what="answer")
        try:
            text = self._dialect.read_answer(tally, decoded, self.name)
            final = tally.final_chunk()
        except MalformedResponse as exc:
            message = f"{self.name}: {exc}"
            raise MalformedResponse(message, provider=self.name) from exc
        return (ChatChunk(text=text, model=tally.model), final) if text else (final,)

    async def _post(self, request: ChatRequest, *, stream: bool) -> Response:
        """Send `request`; its response once the head says it succeeded (an error status
        raises the error it stands for, the response released)."""
        body = orjson.dumps(self._dialect.params(request, stream=stream))
        try:
            response = await self._http.post(body)
        except (HttpStreamError, TimeoutError) as exc:
            raise self._transport_error(exc, streaming=False) from exc
        if response.status >= 400:
            try:
                await self._raise_status_error(response)
            finally:
                response.release()
        return response

    async def _read_answer(self, response: Response) -> bytes:
        """An unstreamed answer's body, within `timeout_s` as the head was (it comes right
        after the head), at most `_ANSWER_BYTES`; a body that breaks off is interrupted."""
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await response.read_all(_ANSWER_BYTES + 1)
        except (HttpStreamError, TimeoutError) as exc:
            raise self._transport_error(exc, streaming=True) from exc
        if len(raw) > _ANSWER_BYTES:
            raise MalformedResponse(
                f"{self.name}: the answer is longer than {_ANSWER_BYTES} bytes", provider=self.name
            )
        return raw

    async def _first_read(self, response: Response) -> bytes:
        """The body's first bytes, within `timeout_s` as the head was (one timer per request):
        a response that sends its head and then nothing fails here, router or not."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await response.read()
        except (HttpStreamError, TimeoutError) as exc:
            raise self._transport_error(exc, streaming=True) from exc

    async def _raise_status_error(self, response: Response) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                raw = await response.read_all(_ERROR_BODY_BYTES)
        except (HttpStreamError, TimeoutError):
            raw = b""
        body = _loads_or_none(raw)
        detail = body.get("error", body) if isinstance(body, dict) else None
        status = response.status
        message = _message(detail) or _reason(status)
        error = wire.error_for_status(
            status,
            f"{self.name}: HTTP {status}: {message}",
            provider=self.name,
            retry_after_s=wire.retry_after_seconds(response.headers),
        )
        raise error from HttpStatusError(status, self._url, raw)

    def _transport_error(self, exc: BaseException, *, streaming: bool) -> ProviderError:
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{self.name}: upstream timed out", provider=self.name)
        if streaming:
            return StreamInterrupted(f"{self.name}: connection lost mid-stream", provider=self.name)
        return UpstreamUnavailable(f"{self.name}: cannot reach upstream: {exc}", provider=self.name)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._http.aclose()


async def _read_to_end(response: Response) -> None:
    """Read what follows the end-of-stream event (the end of a chunked body often comes in a read
    of its own): a response left unfinished gives its connection up instead of back to the pool,
    and the next request opens another (over TLS, a handshake). A body that goes on past
    `_TRAILING_BYTES` or `_TRAILING_WAIT_S` (all the turn waits for it), or breaks off, just
    costs the connection."""
    if response.at_eof():  # the common case: the end came with the last event (no timer)
        return
    with contextlib.suppress(HttpStreamError, TimeoutError):
        async with asyncio.timeout(_TRAILING_WAIT_S):
            await response.read_all(_TRAILING_BYTES)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def _json(data: bytes, provider: str, *, what: str = "chunk") -> object:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedResponse(f"{provider}: unparsable {what}: {exc}", provider=provider) from exc


def _loads_or_none(raw: bytes) -> object:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _message(error: object) -> str | None:
    if isinstance(error, dict) and isinstance(message := error.get("message"), str):
        return message
    return None


def _int(error: object, key: str) -> int | None:
    value = error.get(key) if isinstance(error, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stream_error(error: object, provider: str, *, status: int) -> ProviderError:
    message = _message(error) or "an error event in the stream"
    return wire.error_for_status(status, f"{provider}: HTTP {status}: {message}", provider=provider)
