"""One conformance suite for every chat adapter, over real HTTP against the sim."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import uvicorn

from providers import native_chat
from providers.chat import ChatChunk, ChatProvider, ChatRequest, Message, Usage
from providers.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.factory import build_chat_provider
from providers.native_chat import ANTHROPIC, OPENAI, Dialect, NativeChat
from providers.sim import RunningSim, schema_errors
from providers.sim.corpus import SENTENCES
from tests.conftest import eventually
from tests.providers.conftest import MakeProvider, ProviderCfg
from tests.providers.test_wire import ANTHROPIC_TEXT_STREAM, OPENAI_STREAM

PROMPT = (
    Message("system", "You are a patient singing coach."),
    Message("user", "How should I warm up before practice today?"),
)
PROMPT_WORDS = 6 + 8

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["interaction", "multi_turn"]},
        "interaction_ids": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "score": {"type": ["integer", "null"], "minimum": 1, "maximum": 10},
        "explanation": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "severity": {"enum": ["low", "medium", "high"]},
                },
                "required": ["key", "severity"],
                "additionalProperties": False,
            },
            "maxItems": 3,
        },
    },
    "required": ["kind", "interaction_ids", "score", "explanation", "errors"],
    "additionalProperties": False,
}


def request(**kw: object) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=PROMPT, **kw)  # type: ignore[arg-type]


async def collect(provider: ChatProvider, req: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(req)]


async def read_until_error(provider: ChatProvider, req: ChatRequest) -> tuple[str, ProviderError]:
    text = ""
    with pytest.raises(ProviderError) as info:
        async for chunk in provider.stream(req):
            text += chunk.text
    return text, info.value


async def test_streams_text_then_a_final_chunk(make_provider: MakeProvider) -> None:
    chunks = await collect(make_provider(), request())
    *deltas, final = chunks
    assert len(deltas) >= 10
    assert all(c.text and c.finish_reason is None and c.usage is None for c in deltas)
    assert final.text == ""
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.output_tokens == len(deltas)
    assert final.usage.input_tokens == PROMPT_WORDS
    assert final.model == "gpt-4o-mini"
    text = "".join(c.text for c in deltas)
    assert text.split(". ")[0].rstrip(".") + "." in SENTENCES  # real English from the corpus


async def test_respects_max_tokens(make_provider: MakeProvider) -> None:
    *deltas, final = await collect(make_provider(), request(max_tokens=5))
    assert len(deltas) == 5
    assert final.finish_reason == "length"
    assert final.usage is not None and final.usage.output_tokens == 5


async def test_reply_length_follows_the_knob(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(reply_tokens=100)
    *deltas, _ = await collect(make_provider(), request())
    assert 100 <= len(deltas) < 130


async def test_json_schema_answer_fits(make_provider: MakeProvider) -> None:
    prompt = (*PROMPT, Message("user", "Assess these turns.\nALLOWED_IDS: 41,42\nThanks."))
    req = ChatRequest(
        model="gpt-4o-mini", messages=prompt, json_schema=ANSWER_SCHEMA, schema_name="assessment"
    )
    *deltas, final = await collect(make_provider(), req)
    answer = json.loads("".join(c.text for c in deltas))
    assert schema_errors(ANSWER_SCHEMA, answer) == []
    assert answer["interaction_ids"] == ["41", "42"]
    assert final.finish_reason == "stop"


async def test_invalid_json_knob_breaks_the_schema(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(invalid_json_rate=1.0)
    req = request(json_schema=ANSWER_SCHEMA)
    *deltas, _ = await collect(make_provider(), req)
    answer = json.loads("".join(c.text for c in deltas))
    assert schema_errors(ANSWER_SCHEMA, answer) != []
    assert fresh_sim.stats()["by_outcome"]["invalid_json"] == 1


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, 7, RateLimited),
        (500, None, UpstreamUnavailable),
        (503, 2.5, UpstreamUnavailable),
        (529, None, UpstreamUnavailable),
        (400, None, BadRequest),
        (404, None, BadRequest),
        (403, None, AuthenticationFailed),
    ],
)
async def test_maps_error_statuses(
    make_provider: MakeProvider,
    fresh_sim: RunningSim,
    status: int,
    retry_after: float | None,
    expected: type[ProviderError],
) -> None:
    await fresh_sim.set_knobs(fail_rate=1.0, fail_status=status, retry_after=retry_after)
    provider = make_provider()
    text, error = await read_until_error(provider, request())
    assert text == ""
    assert type(error) is expected
    assert error.status == status
    assert error.retry_after_s == retry_after
    assert error.provider == provider.name
    assert error.transient is (status in (429, 500, 503, 529))
    assert isinstance(error.__cause__, Exception)  # raised `from` the client's own error


async def test_bad_key_is_an_auth_failure(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(require_key="sk-the-right-one")
    _, error = await read_until_error(make_provider(api_key="sk-wrong"), request())
    assert isinstance(error, AuthenticationFailed)
    assert error.status == 401 and not error.transient
    *_, final = await collect(make_provider(api_key="sk-the-right-one"), request())
    assert final.finish_reason == "stop"


async def test_malformed_chunk(make_provider: MakeProvider, fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(malformed_rate=1.0)
    text, error = await read_until_error(make_provider(), request())
    assert text == ""
    assert isinstance(error, MalformedResponse) and error.transient


async def test_mid_stream_drop(make_provider: MakeProvider, fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(drop_after=3)
    text, error = await read_until_error(make_provider(), request())
    assert len(text.split()) == 3
    assert isinstance(error, StreamInterrupted) and error.transient
    assert fresh_sim.stats()["by_outcome"]["dropped"] == 1


async def test_drop_after_the_last_token_still_interrupts(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(drop_after=1000)
    text, error = await read_until_error(make_provider(), request(max_tokens=4))
    assert len(text.split()) == 4  # every token arrived, but never the finish marker
    assert isinstance(error, StreamInterrupted)


async def test_hang_cancelled_by_the_caller_closes_the_stream(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(hang_rate=1.0)
    provider = make_provider()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await collect(provider, request())
    await eventually(lambda: fresh_sim.stats()["in_flight"] == 0)
    assert fresh_sim.stats()["by_outcome"]["hung"] == 1
    await fresh_sim.set_knobs(hang_rate=0.0)
    *_, final = await collect(provider, request())  # the client is still usable
    assert final.finish_reason == "stop"


async def test_hang_hits_the_configured_timeout(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(hang_rate=1.0)
    _, error = await read_until_error(make_provider(timeout_s=0.3), request())
    assert isinstance(error, UpstreamTimeout) and error.transient


async def test_closing_a_stream_early_tells_the_upstream(
    make_provider: MakeProvider, fresh_sim: RunningSim
) -> None:
    await fresh_sim.set_knobs(tokens_per_s=100, reply_tokens=200)
    stream = make_provider().stream(request())
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    assert first.text
    await stream.aclose()
    await eventually(lambda: fresh_sim.stats()["by_outcome"]["cancelled"] == 1)
    assert fresh_sim.stats()["in_flight"] == 0


async def test_unreachable_upstream_is_unavailable(make_provider: MakeProvider) -> None:
    provider = make_provider(base_url="http://127.0.0.1:9/v1")
    _, error = await read_until_error(provider, request())
    assert isinstance(error, UpstreamUnavailable) and error.transient


@contextlib.asynccontextmanager
async def recording_proxy() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback 'proxy' that records each request line and answers 502 Bad Gateway."""
    lines: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append(await reader.readline())
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", lines


async def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(
    make_provider: MakeProvider, fresh_sim: RunningSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with recording_proxy() as (proxy_url, lines):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        _, error = await read_until_error(make_provider(), request())
        assert isinstance(error, ProviderError) and error.transient
        assert lines and lines[0].startswith(f"POST {fresh_sim.url}/".encode())

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        *_, final = await collect(make_provider(), request())
        assert final.finish_reason == "stop" and len(lines) == 1


@pytest.mark.parametrize("dialect", [OPENAI, ANTHROPIC], ids=lambda d: d.name)
async def test_an_error_status_whose_body_breaks_off_still_maps_to_its_status(
    dialect: Dialect,
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 500\r\nretry-after: 3\r\n\r\n"
        writer.write(head + b'{"error": {"mess')  # and the connection drops
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("/v1" if dialect is OPENAI else "")
    provider = NativeChat("broken", dialect, api_key="sk-test", base_url=base, timeout_s=5)
    async with server:
        _, error = await read_until_error(provider, request())
    await provider.aclose()
    assert isinstance(error, UpstreamUnavailable) and error.transient
    assert error.status == 503 and error.retry_after_s == 3
    assert "HTTP 503: Service Unavailable" in error.message


async def test_aclose_releases_the_client(make_provider: MakeProvider) -> None:
    provider = make_provider()
    *_, final = await collect(provider, request())
    assert final.finish_reason == "stop"
    await provider.aclose()
    await provider.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await collect(provider, request())


# -- recorded streams, replayed over real HTTP ------------------------------------------------
# What the sim does not send: Anthropic pings and in-stream `error` events, OpenAI in-stream
# error lines, and chunks that are valid JSON but not objects.


@dataclass(slots=True)
class Replay:
    """An upstream on loopback that answers every request with `body` as an SSE stream; with
    `end_after_s`, it sends `tail` a moment after the body and ends the body that much later."""

    url: str = ""
    body: bytes = b""
    end_after_s: float = 0.0
    tail: bytes = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if not self.end_after_s:
            await send({"type": "http.response.body", "body": self.body})
            return
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        if self.tail:
            await asyncio.sleep(0.02)
            await send({"type": "http.response.body", "body": self.tail, "more_body": True})
        await asyncio.sleep(self.end_after_s)
        await send({"type": "http.response.body", "body": b""})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the signals


@pytest.fixture(scope="module")
async def replay() -> AsyncIterator[Replay]:
    app = Replay()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the replay server did not start"
        await asyncio.sleep(0.005)
    app.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield app
    server.should_exit = True
    await serving


def openai_sse(*data: object) -> bytes:
    return b"".join(b"data: " + orjson.dumps(d) + b"\n\n" for d in data) + b"data: [DONE]\n\n"


def anthropic_sse(*events: tuple[str, object]) -> bytes:
    return b"".join(f"event: {e}\ndata: ".encode() + orjson.dumps(d) + b"\n\n" for e, d in events)


@pytest.fixture(params=["native", "sdk"])
async def replayed(request: pytest.FixtureRequest, replay: Replay) -> AsyncIterator[MakeProvider]:
    """Builds adapters of a given kind (over each client) against `replay`; closes them after
    the test."""
    made: list[ChatProvider] = []

    def make(kind: str, upstream: str | None = None) -> ChatProvider:
        """`upstream`: another address for `replay` (a forwarder in front of it)."""
        url = upstream or replay.url
        base_url = f"{url}/v1" if kind == "openai" else url
        provider = build_chat_provider(
            "replayed", ProviderCfg(kind, base_url, client=request.param), sim_url=url
        )
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
    replay.end_after_s = 0.0


async def test_recorded_openai_stream(replay: Replay, replayed: MakeProvider) -> None:
    replay.body = openai_sse(*OPENAI_STREAM)
    chunks = await collect(replayed("openai"), request())
    assert [c.text for c in chunks] == ["Breathe", " slowly.", ""]
    assert chunks[-1] == ChatChunk(
        usage=Usage(19, 4), finish_reason="stop", model="gpt-4o-mini-2024-07-18"
    )


async def test_recorded_anthropic_stream_with_pings(replay: Replay, replayed: MakeProvider) -> None:
    ping = ("ping", {"type": "ping"})
    events = [(e["type"], e) for e in ANTHROPIC_TEXT_STREAM]
    replay.body = anthropic_sse(ping, *[x for event in events for x in (event, ping)])
    chunks = await collect(replayed("anthropic"), request())
    assert [c.text for c in chunks] == ["Relax", " your jaw", ""]
    assert chunks[-1] == ChatChunk(
        usage=Usage(25, 3), finish_reason="length", model="claude-haiku-4-5"
    )


@pytest.mark.parametrize(
    ("error_type", "expected", "status"),
    [
        ("overloaded_error", UpstreamUnavailable, 529),
        ("rate_limit_error", RateLimited, 429),
        ("api_error", UpstreamUnavailable, 500),
        ("invalid_request_error", BadRequest, 400),
        ("made_up_error", UpstreamUnavailable, 500),
    ],
)
async def test_anthropic_error_event_mid_stream(
    replay: Replay,
    replayed: MakeProvider,
    error_type: str,
    expected: type[ProviderError],
    status: int,
) -> None:
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    replay.body = anthropic_sse(
        *[(e["type"], e) for e in ANTHROPIC_TEXT_STREAM[:3]], ("error", error)
    )
    text, raised = await read_until_error(replayed("anthropic"), request())
    assert text == "Relax"
    assert type(raised) is expected
    assert raised.status == status
    assert raised.provider == "replayed"


async def test_openai_error_line_mid_stream(replay: Replay, replayed: MakeProvider) -> None:
    error = {"error": {"message": "The server had an error.", "type": "server_error"}}
    replay.body = openai_sse(*OPENAI_STREAM[:2], error)
    text, raised = await read_until_error(replayed("openai"), request())
    assert text == "Breathe"
    assert isinstance(raised, UpstreamUnavailable) and raised.transient
    assert "The server had an error." in raised.message


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize("data", [None, [1, 2], "text", 42])
async def test_a_chunk_that_is_not_an_object_is_malformed(
    replay: Replay, replayed: MakeProvider, kind: str, data: object
) -> None:
    if kind == "openai":
        replay.body = openai_sse(OPENAI_STREAM[1], data)
    else:
        start = ANTHROPIC_TEXT_STREAM[0]
        replay.body = anthropic_sse(("message_start", start), ("content_block_delta", data))
    _, raised = await read_until_error(replayed(kind), request())
    assert isinstance(raised, MalformedResponse) and raised.transient
    assert raised.provider == "replayed"


@contextlib.asynccontextmanager
async def counting_forwarder(upstream_url: str) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback TCP forwarder to `upstream_url` that counts the connections made through it."""
    host, port = upstream_url.removeprefix("http://").rsplit(":", 1)
    accepted: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        accepted.append(1)
        up_r, up_w = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_body_that_ends_after_its_last_event_leaves_the_connection_reusable(
    replay: Replay, replayed: MakeProvider, kind: str
) -> None:
    # Servers often end the body in a read of its own after the last event (`[DONE]`,
    # `message_stop`). A client that stops reading at the event gives the connection up
    # unfinished, and the next request opens another: over TLS a handshake a turn.
    if kind == "openai":
        replay.body = openai_sse(*OPENAI_STREAM)
    else:
        replay.body = anthropic_sse(*[(e["type"], e) for e in ANTHROPIC_TEXT_STREAM])
    replay.end_after_s = 0.05
    async with counting_forwarder(replay.url) as (url, accepted):
        provider = replayed(kind, upstream=url)
        for _ in range(3):
            *_, final = await collect(provider, request())
            assert final.finish_reason in ("stop", "length")
        assert len(accepted) == 1


@pytest.mark.parametrize(
    ("dialect", "tail"),
    [(OPENAI, "late"), (ANTHROPIC, "late"), (OPENAI, "long")],
    ids=["openai-late", "anthropic-late", "openai-long"],
)
async def test_the_native_client_gives_up_a_connection_whose_body_goes_on_after_the_end(
    replay: Replay, dialect: Dialect, tail: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The body ends well after the end-of-stream event: past the wait (shortened here), or once
    # 64 KiB more have come first (the end is due within the default wait), the turn ends without
    # it and the connection goes.
    if dialect is OPENAI:
        replay.body, texts = openai_sse(*OPENAI_STREAM), ["Breathe", " slowly.", ""]
    else:
        events = [(e["type"], e) for e in ANTHROPIC_TEXT_STREAM]
        replay.body, texts = anthropic_sse(*events), ["Relax", " your jaw", ""]
    if tail == "late":
        monkeypatch.setattr(native_chat, "_TRAILING_WAIT_S", 0.1)
        replay.end_after_s = 1.0
    else:
        replay.end_after_s = 0.5
        replay.tail = b": " + b"x" * 100_000 + b"\n\n"  # a comment, after the last event
    try:
        async with counting_forwarder(replay.url) as (url, accepted):
            base_url = f"{url}/v1" if dialect is OPENAI else url
            provider = NativeChat("replayed", dialect, api_key="sk-test", base_url=base_url)
            for _ in range(2):
                chunks = await collect(provider, request())
                assert [c.text for c in chunks] == texts
                assert chunks[-1].finish_reason in ("stop", "length")
            await provider.aclose()
        assert len(accepted) == 2
    finally:
        replay.end_after_s, replay.tail = 0.0, b""


async def test_a_connection_that_drops_after_done_still_ends_the_turn_whole() -> None:
    # The end of the body never comes: the reply is complete at `[DONE]`, so the drop that
    # follows costs the connection, not the turn.
    body = openai_sse(*OPENAI_STREAM)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        writer.write(head + b"transfer-encoding: chunked\r\n\r\n")
        writer.write(f"{len(body):x}\r\n".encode() + body + b"\r\n")  # no terminating chunk
        await writer.drain()
        await asyncio.sleep(0.05)  # after the client has read `[DONE]`
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    provider = NativeChat(
        "dropping", OPENAI, api_key="sk-test", base_url=f"http://127.0.0.1:{port}/v1"
    )
    async with server:
        chunks = await collect(provider, request())
    await provider.aclose()
    assert [c.text for c in chunks] == ["Breathe", " slowly.", ""]
    assert chunks[-1].finish_reason == "stop"
