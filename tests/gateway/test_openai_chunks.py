"""The OpenAI-compatible route's chunk frames: a token's frame reuses the bytes every frame
starts with, and is byte for byte what encoding its whole chunk gives."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.openai_compat import _Chunks
from gateway.streaming import sse_frame
from streams.events import ResponseDelta, ResponseStarted, ResponseToolCall


def _delta(frame: bytes | None) -> Any:
    assert frame is not None and frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    return orjson.loads(frame[len(b"data: ") : -2])["choices"][0]["delta"]


def test_each_frame_is_its_whole_chunk_encoded() -> None:
    chunks = _Chunks("chatcmpl-abc", include_usage=False)
    started = chunks.render(0, ResponseStarted("t1", "primary", 'gpt-4o-mini "q" \u00e9'))
    assert started == sse_frame(orjson.dumps(chunks._chunk({"role": "assistant", "content": ""})))
    assert chunks.model == 'gpt-4o-mini "q" \u00e9'
    for text in ("Hello", ' "world"\n', "\u2603", ""):
        frame = chunks.render(1, ResponseDelta("t1", text))
        assert frame == sse_frame(orjson.dumps(chunks._chunk({"content": text})))
        assert _delta(frame) == {"content": text}
    frame = chunks.render(2, ResponseToolCall("t1", "call_1", "get_progress", "{}"))
    calls = _delta(frame)["tool_calls"]
    assert calls[0]["id"] == "call_1" and calls[0]["function"]["name"] == "get_progress"
    assert frame == sse_frame(orjson.dumps(chunks._chunk({"tool_calls": calls})))
