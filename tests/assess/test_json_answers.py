"""A JSON-schema answer, read whole by the assessor, is not handed on token by token: the native
client holds its text back after the first chunk (at most one hand-on a second), so a 200-token
answer costs the router's per-chunk path a few chunks, not 200. A chat reply still streams."""

from __future__ import annotations

from typing import Any

import orjson

from assess.rubric import answer_schema
from providers.chat import ChatRequest, Message
from providers.native_chat import OPENAI, NativeChat


def _request(schema: dict[str, Any] | None) -> ChatRequest:
    return ChatRequest(
        model="gpt-4o-mini",
        messages=(Message("user", "How can I keep my breath steady on long high notes?"),),
        max_tokens=1200,
        json_schema=schema,
        schema_name="coaching_assessment",
    )


async def _chunks(sim: Any, request: ChatRequest) -> list[str]:
    client = NativeChat("sim", OPENAI, api_key="sk-sim", base_url=f"{sim.url}/v1")
    try:
        return [chunk.text async for chunk in client.stream(request) if chunk.text]
    finally:
        await client.aclose()


async def test_a_json_answer_comes_in_a_few_chunks(fast_sim: Any) -> None:
    schema = answer_schema("interaction", ["clarity", "structure"], 1)
    chunks = await _chunks(fast_sim, _request(schema))
    answer = orjson.loads("".join(chunks))
    assert answer["assessments"]
    assert 1 <= len(chunks) <= 3


async def test_a_chat_reply_still_streams_token_by_token(fast_sim: Any) -> None:
    await fast_sim.set_knobs(reply_tokens=40)
    chunks = await _chunks(fast_sim, _request(None))
    assert len(chunks) >= 20
