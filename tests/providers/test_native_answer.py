"""JSON-schema answers asked for unstreamed by the native client (`NativeChat._answer`), over
real HTTP: against the sim (both dialects, its fault knobs, the router's answer deadline) and
against a canned upstream for what the sim does not send."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import uvicorn

from assess.rubric import answer_schema
from providers import native_chat, wire
from providers.chat import ChatChunk, ChatProvider, ChatRequest, Message, Usage
from providers.errors import (
    BadRequest,
    MalformedResponse,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.factory import build_chat_provider
from providers.resilience import BreakerConfig, DeadlineConfig, RetryConfig
from providers.routing import Router, Target
from providers.sim import RunningSim, schema_errors
from tests.providers.conftest import ProviderCfg, provider_cfg

DIALECTS = ("openai", "anthropic")
MODEL = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}
FOCUSES = ["pacing", "clarity"]
SCHEMA = answer_schema("interaction", FOCUSES, 1)


def assess_request(kind: str, **kw: Any) -> ChatRequest:
    """Shaped as the assessor's (`assess.assessor.Assessor._chat_request`)."""
    messages = (
        Message("system", "You assess coaching turns. Answer with JSON only."),
        Message("user", "Assess this turn: I pitched a pilot to the ward.\nALLOWED_IDS: 41"),
    )
    fields: dict[str, Any] = {
        "max_tokens": 1200,
        "temperature": 0.0,
        "json_schema": SCHEMA,
        "schema_name": "coaching_assessment",
        **kw,
    }
    return ChatRequest(model=MODEL[kind], messages=messages, **fields)


async def collect(provider: ChatProvider, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request)]


async def error_of(provider: ChatProvider, request: ChatRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await collect(provider, request)
    return caught.value


@pytest.fixture(params=DIALECTS)
async def native(request: pytest.FixtureRequest, fresh_sim: RunningSim) -> AsyncIterator[Any]:
    """(kind, a native adapter of that kind against the sim); closed after the test."""
    kind = request.param
    provider = build_chat_provider(
        f"{kind}-native", provider_cfg(kind, fresh_sim.url, timeout_s=2.0), sim_url=fresh_sim.url
    )
    yield kind, provider
    await provider.aclose()


def last_received(sim: RunningSim) -> dict[str, Any]:
    return sim.state.received[-1]


# -- against the sim ---------------------------------------------------------------------------


async def test_a_json_answer_comes_whole_and_unstreamed(
    native: tuple[str, ChatProvider], fresh_sim: RunningSim
) -> None:
    kind, provider = native
    chunks = await collect(provider, assess_request(kind))
    assert last_received(fresh_sim)["stream"] is False
    assert len(chunks) == 2  # the whole text, then the final chunk
    text, final = chunks
    answer = json.loads(text.text)
    assert schema_errors(SCHEMA, answer) == []
    assert answer["interaction_ids"] == ["41"]
    assert sorted(answer["assessments"]) == sorted(FOCUSES)
    assert final.text == ""
    assert final.finish_reason == "stop"
    assert final.model == MODEL[kind]
    assert final.usage is not None
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 1  # the sim's count of the answer's tokens, not 1 chunk


async def test_a_chat_request_is_still_streamed(
    native: tuple[str, ChatProvider], fresh_sim: RunningSim
) -> None:
    kind, provider = native
    chunks = await collect(
        provider, ChatRequest(model=MODEL[kind], messages=(Message("user", "Hi"),))
    )
    assert last_received(fresh_sim)["stream"] is True
    assert len(chunks) > 2


async def test_a_json_answer_cut_by_max_tokens_says_length(
    native: tuple[str, ChatProvider], fresh_sim: RunningSim
) -> None:
    kind, provider = native
    *_, final = await collect(provider, assess_request(kind, max_tokens=5))
    assert last_received(fresh_sim)["stream"] is False
    assert final.finish_reason == "length"
    assert final.usage is not None and final.usage.output_tokens == 5


async def test_the_invalid_json_knob_applies_unstreamed(
    native: tuple[str, ChatProvider], fresh_sim: RunningSim
) -> None:
    kind, provider = native
    await fresh_sim.set_knobs(invalid_json_rate=1.0)
    chunks = await collect(provider, assess_request(kind))
    assert last_received(fresh_sim)["stream"] is False
    text = "".join(c.text for c in chunks)
    with contextlib.suppress(json.JSONDecodeError):
        assert schema_errors(SCHEMA, json.loads(text)) != []
    assert fresh_sim.stats()["by_outcome"]["invalid_json"] == 1


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({"malformed_rate": 1.0}, MalformedResponse),
        ({"drop_after": 1}, StreamInterrupted),
        ({"hang_rate": 1.0}, UpstreamTimeout),  # the adapter's timeout_s
        ({"fail_rate": 1.0, "fail_status": 503}, UpstreamUnavailable),
        ({"fail_rate": 1.0, "fail_status": 429, "retry_after": 7}, RateLimited),
        ({"fail_rate": 1.0, "fail_status": 400}, BadRequest),
    ],
    ids=["malformed", "dropped", "hung", "503", "429", "400"],
)
async def test_faults_of_an_unstreamed_answer(
    native: tuple[str, ChatProvider],
    fresh_sim: RunningSim,
    knobs: dict[str, Any],
    expected: type[ProviderError],
) -> None:
    kind, provider = native
    await fresh_sim.set_knobs(**knobs)
    error = await error_of(provider, assess_request(kind))
    assert type(error) is expected, error
    assert last_received(fresh_sim)["stream"] is False
    if expected is RateLimited:
        assert error.status == 429 and error.retry_after_s == 7


# -- the router's deadline for a whole answer ---------------------------------------------------


def router_for(sim: RunningSim, kind: str, deadlines: DeadlineConfig, **kw: Any) -> Router:
    provider = build_chat_provider(
        "p", provider_cfg(kind, sim.url, timeout_s=10.0), sim_url=sim.url
    )
    return Router(
        {"p": provider},
        {"assess": [Target("p", MODEL[kind])]},
        deadlines=deadlines,
        retry=RetryConfig(attempts_per_target=1),
        **kw,
    )


async def read_routed(router: Router, request: ChatRequest) -> str:
    routed = await router.open_stream("assess", request)
    try:
        parts = [chunk.text async for chunk in routed]
    finally:
        await routed.aclose()
    return "".join(parts)


@pytest.mark.parametrize("kind", DIALECTS)
async def test_the_router_waits_answer_s_for_a_json_answer(
    fresh_sim: RunningSim, kind: str
) -> None:
    await fresh_sim.set_knobs(ttft_ms=500)  # the whole answer comes after half a second
    router = router_for(fresh_sim, kind, DeadlineConfig(first_token_s=0.2, answer_s=5.0))
    try:
        text = await read_routed(router, assess_request(kind))
        assert schema_errors(SCHEMA, json.loads(text)) == []
        # A chat request on the same route still has first_token_s.
        chat = ChatRequest(model="", messages=(Message("user", "Hi"),))
        with pytest.raises(UpstreamTimeout, match=r"no first token within 0\.2s"):
            await read_routed(router, chat)
    finally:
        await router.aclose()


@pytest.mark.parametrize("kind", DIALECTS)
async def test_a_json_answer_slower_than_answer_s_times_out(
    fresh_sim: RunningSim, kind: str
) -> None:
    await fresh_sim.set_knobs(ttft_ms=500)
    router = router_for(fresh_sim, kind, DeadlineConfig(first_token_s=5.0, answer_s=0.2))
    try:
        with pytest.raises(UpstreamTimeout, match=r"no answer within 0\.2s"):
            await read_routed(router, assess_request(kind))
    finally:
        await router.aclose()


async def test_a_slow_whole_answer_is_not_a_slow_first_token(fresh_sim: RunningSim) -> None:
    await fresh_sim.set_knobs(ttft_ms=150)
    breaker = BreakerConfig(slow_ttft_ms=50, min_calls=2, failure_rate=0.5, window_s=60)
    router = router_for(fresh_sim, "openai", DeadlineConfig(answer_s=5.0), breaker=breaker)
    try:
        for _ in range(3):
            await read_routed(router, assess_request("openai"))
        assert (await router.route_status())["assess"].usable == ("p:gpt-4o-mini",)
    finally:
        await router.aclose()


# -- against a canned upstream: what the sim does not send --------------------------------------


@dataclass(slots=True)
class Canned:
    """An upstream on loopback that answers every request with `status` and `body` (JSON), and
    keeps the request bodies it got."""

    url: str = ""
    status: int = 200
    body: bytes = b""
    received: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.received.append(orjson.loads(raw))
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the signals


@pytest.fixture(scope="module")
async def canned_server() -> AsyncIterator[Canned]:
    app = Canned()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = _QuietServer(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the canned server did not start"
        await asyncio.sleep(0.005)
    app.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield app
    server.should_exit = True
    await serving


@pytest.fixture
async def canned(canned_server: Canned) -> AsyncIterator[Canned]:
    canned_server.status, canned_server.body = 200, b""
    canned_server.received.clear()
    yield canned_server


@contextlib.asynccontextmanager
async def canned_provider(kind: str, canned: Canned) -> AsyncIterator[ChatProvider]:
    base_url = f"{canned.url}/v1" if kind == "openai" else canned.url
    provider = build_chat_provider(
        "canned", ProviderCfg(kind, base_url, timeout_s=2.0), sim_url=canned.url
    )
    try:
        yield provider
    finally:
        await provider.aclose()


OPENAI_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": '{"score": 7}', "refusal": None},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 31, "completion_tokens": 6, "total_tokens": 37},
}

ANTHROPIC_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "coaching_assessment", "input": {"score": 7}}
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {"input_tokens": 40, "output_tokens": 9},
}


async def test_openai_whole_answer_and_request_body(canned: Canned) -> None:
    canned.body = orjson.dumps(OPENAI_ANSWER)
    async with canned_provider("openai", canned) as provider:
        chunks = await collect(provider, assess_request("openai"))
    assert chunks == [
        ChatChunk(text='{"score": 7}', model="gpt-4o-mini-2024-07-18"),
        ChatChunk(usage=Usage(31, 6), finish_reason="stop", model="gpt-4o-mini-2024-07-18"),
    ]
    sent = canned.received[-1]
    assert sent["stream"] is False and "stream_options" not in sent
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA


async def test_anthropic_whole_answer_is_the_forced_tools_input(canned: Canned) -> None:
    canned.body = orjson.dumps(ANTHROPIC_ANSWER)
    async with canned_provider("anthropic", canned) as provider:
        chunks = await collect(provider, assess_request("anthropic"))
    model = "claude-haiku-4-5-20251001"
    assert chunks == [
        ChatChunk(text='{"score":7}', model=model),
        ChatChunk(usage=Usage(40, 9), finish_reason="stop", model=model),
    ]
    sent = canned.received[-1]
    assert sent["stream"] is False
    assert sent["tool_choice"] == {"type": "tool", "name": "coaching_assessment"}


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("openai", b'{"choices": [{"index": 0, "message": {"content": "{\\"sc', MalformedResponse),
        ("openai", b"", MalformedResponse),
        ("openai", b"[1, 2]", MalformedResponse),
        ("openai", b'{"model": "m", "choices": []}', MalformedResponse),
        ("openai", b'{"choices": [{"index": 0, "finish_reason": "stop"}]}', MalformedResponse),
        ("anthropic", b'{"type": "message", "model": "m"}', MalformedResponse),
        ("anthropic", b'{"content": [{"type": "tool_use", "name": "x"}]}', MalformedResponse),
        ("openai", b'{"error": {"message": "overloaded", "code": 503}}', UpstreamUnavailable),
        (
            "anthropic",
            b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}',
            RateLimited,
        ),
    ],
    ids=[
        "cut-short",
        "empty",
        "not-an-object",
        "no-choices",
        "no-message",
        "no-content",
        "tool-without-input",
        "openai-error-in-200",
        "anthropic-error-in-200",
    ],
)
async def test_a_bad_whole_answer(
    canned: Canned, kind: str, body: bytes, expected: type[ProviderError]
) -> None:
    canned.body = body
    async with canned_provider(kind, canned) as provider:
        error = await error_of(provider, assess_request(kind))
    assert type(error) is expected, error
    assert error.provider == "canned"


async def test_an_error_status_maps_as_for_a_stream(canned: Canned) -> None:
    canned.status = 429
    canned.body = b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
    async with canned_provider("openai", canned) as provider:
        error = await error_of(provider, assess_request("openai"))
    assert isinstance(error, RateLimited)
    assert "Rate limit reached" in error.message


async def test_an_answer_past_the_size_bound_is_refused(
    canned: Canned, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native_chat, "_ANSWER_BYTES", 1000)
    answer = {**OPENAI_ANSWER, "padding": "x" * 2000}
    canned.body = orjson.dumps(answer)
    async with canned_provider("openai", canned) as provider:
        error = await error_of(provider, assess_request("openai"))
        assert isinstance(error, MalformedResponse)
        assert "longer than 1000 bytes" in error.message
        canned.body = orjson.dumps(OPENAI_ANSWER)  # the next request is served on a new one
        *_, final = await collect(provider, assess_request("openai"))
    assert final.finish_reason == "stop"


# -- the pure reading, in providers.wire ---------------------------------------------------------


def test_openai_answer_with_tool_calls() -> None:
    tally = wire.StreamTally.for_request(assess_request("openai"))
    message = {
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    assert wire.openai_answer(tally, body) == ""
    final = tally.final_chunk()
    assert final.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [("call_1", "f", "{}")]
    assert final.usage == Usage(0, 1)  # without usage: the count of parts, as for a stream


def test_anthropic_answer_joins_text_and_reads_stop_reason() -> None:
    tally = wire.StreamTally.for_request(assess_request("anthropic", json_schema=None))
    body = {
        "content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "Hi."}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    assert wire.anthropic_answer(tally, body) == "Hi."
    assert tally.final_chunk() == ChatChunk(
        usage=Usage(3, 2), finish_reason="length", model=MODEL["anthropic"]
    )
