"""The official `openai` SDK, unchanged, against the gateway with a JWT as its API key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest

from gateway.openai_compat import _Chunks
from gateway.outbound import Outbound
from gateway.server import RunningGateway
from gateway.streaming import EventStream
from streams.events import ResponseDelta, ResponseStarted
from streams.turn import Emit, TurnControl
from tests.gateway.test_event_stream import served

Token = Callable[..., str]


def _client(gateway: RunningGateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


async def test_non_streaming_completion(gateway: RunningGateway, token: Token) -> None:
    async with _client(gateway, token()) as client:
        completion = await client.chat.completions.create(
            model="coach",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "One tip for pacing?"},
            ],
        )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and len(choice.message.content.split()) > 3
    assert choice.finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_streaming_completion_with_usage(gateway: RunningGateway, token: Token) -> None:
    async with _client(gateway, token()) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Tip for posture?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) > 3
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[0].model == "gpt-4o-mini"


async def test_models_lists_route_models(gateway: RunningGateway, token: Token) -> None:
    async with _client(gateway, token()) as client:
        models = [m.id async for m in client.models.list()]
    assert models[0] == "coach"
    assert "gpt-4o-mini" in models and "claude-haiku-4-5" in models


async def test_bad_key_raises_authentication_error(gateway: RunningGateway) -> None:
    async with _client(gateway, "not-a-jwt") as client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(
                model="coach", messages=[{"role": "user", "content": "hi"}]
            )
    body: Any = info.value.body
    assert body["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        (
            {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
            openai.NotFoundError,
            "model_not_found",
        ),
        ({"model": "coach", "messages": []}, openai.BadRequestError, "invalid_request"),
        (
            {"model": "coach", "messages": [{"role": "assistant", "content": "hi"}]},
            openai.BadRequestError,
            "empty_text",
        ),
    ],
)
async def test_bad_requests(
    gateway: RunningGateway, token: Token, kwargs: dict[str, Any], error: type[Exception], code: str
) -> None:
    async with _client(gateway, token()) as client:
        with pytest.raises(error) as info:
            await client.chat.completions.create(**kwargs)
    assert getattr(info.value, "body", {})["code"] == code


async def test_upstream_down_is_a_server_error(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(fail_rate=1.0, fail_status=503)
    async with _client(gateway, token()) as client:
        with pytest.raises(openai.APIStatusError) as info:
            await client.chat.completions.create(
                model="coach", messages=[{"role": "user", "content": "hi"}]
            )
    assert info.value.status_code in (502, 503)


async def test_a_stream_cut_upstream_ends_in_a_retryable_error(
    gateway: RunningGateway, token: Token, fast_sim: Any
) -> None:
    await fast_sim.set_knobs(drop_after=3)
    async with _client(gateway, token()) as client:
        stream = await client.chat.completions.create(
            model="coach", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError) as info:
            async for _ in stream:
                pass
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"] == "stream_interrupted"
    assert info.value.body["retryable"] is True


async def test_a_dropped_stream_ends_in_an_error_the_sdk_raises() -> None:
    """A client dropped for reading too slowly (here the drop is called as a send stuck past the
    timeout calls it) gets an error chunk in place of `[DONE]`: the SDK raises, instead of
    taking what it got for the whole reply."""

    def make() -> EventStream:
        outbound = Outbound(8, send_timeout_s=5)
        chunks = _Chunks("chatcmpl-1", include_usage=False)

        async def produce(emit: Emit) -> None:
            await emit(ResponseStarted("turn_1", "sim", "gpt-4o-mini"))
            await emit(ResponseDelta("turn_1", "Breathe"))
            await asyncio.sleep(0.05)
            outbound.overflow()
            await asyncio.sleep(5)  # cancelled by the drop

        return EventStream(
            outbound, produce, TurnControl(), chunks.render, trailer=b"data: [DONE]\n\n"
        )

    texts: list[str] = []
    async with served(make, []) as (host, port):
        client = openai.AsyncOpenAI(base_url=f"http://{host}:{port}", api_key="-", max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="coach", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError, match="read too slowly"):
                async for chunk in stream:
                    texts.append(chunk.choices[0].delta.content or "")
    assert "".join(texts) == "Breathe"
