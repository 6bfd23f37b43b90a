"""One conformance suite for every chat adapter, over real HTTP against the sim."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

import pytest

from providers.chat import ChatChunk, ChatProvider, ChatRequest, Message
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
from providers.sim import RunningSim, schema_errors
from providers.sim.corpus import SENTENCES
from tests.providers.conftest import MakeProvider, eventually

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
    assert isinstance(error.__cause__, Exception)  # raised `from` the SDK's error


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


async def test_aclose_releases_the_client(make_provider: MakeProvider) -> None:
    provider = make_provider()
    *_, final = await collect(provider, request())
    assert final.finish_reason == "stop"
    await provider.aclose()
    await provider.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await collect(provider, request())
