"""A JSON-schema answer, read whole by the assessor, is asked for unstreamed: the native client
hands on its text in one chunk, so a 200-token answer costs the gateway one response to read,
not 200 server-sent events. A chat reply still streams."""

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


async def test_a_json_answer_comes_in_one_chunk(fast_sim: Any) -> None:
    schema = answer_schema("interaction", ["clarity", "structure"], 1)
    chunks = await _chunks(fast_sim, _request(schema))
    assert len(chunks) == 1
    assert orjson.loads(chunks[0])["assessments"]


async def test_a_chat_reply_still_streams_token_by_token(fast_sim: Any) -> None:
    await fast_sim.set_knobs(reply_tokens=40)
    chunks = await _chunks(fast_sim, _request(None))
    assert len(chunks) >= 20
