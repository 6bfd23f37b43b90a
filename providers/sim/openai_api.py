"""The OpenAI side of the sim: `POST /v1/chat/completions`, streamed or not."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from providers.sim.reply import (
    Fate,
    Plan,
    SimRequest,
    first_token_delay,
    non_stream_delay,
    paced,
    word_count,
)
from providers.sim.state import (
    SimState,
    SimulatedDrop,
    error_headers,
    guarded,
    hang_forever,
    json_response,
    wait_for_disconnect,
)
from providers.sim.tool_answer import SimTool

__all__ = ["chat_completions", "openai_error", "parse_openai"]

_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'data: {"id": "chatcmpl-sim", "choices": [{"delta": {"content": "Brea\n\n'
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error in OpenAI's shape, so the SDK raises its typed error for `status`."""
    kind, code = _ERROR_TYPES.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json_response(body, status, headers)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _tools(body: dict[str, Any]) -> tuple[SimTool, ...]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise ValueError("'tools' must be an array")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"'tools[{i}].function.name' is required")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ValueError(f"'tools[{i}].function.parameters' must be an object")
        description = function.get("description")
        tools.append(SimTool(function["name"], str(description or ""), parameters))
    return tuple(tools)


def _tool_choice(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice")
    if choice is None:
        return "auto"
    if choice in ("auto", "none", "required"):
        return str(choice)
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return str(function["name"])
    raise ValueError("'tool_choice' must be auto, none, required or a function")


def _tool_result(messages: list[Any]) -> str | None:
    last = messages[-1]
    if isinstance(last, dict) and last.get("role") == "tool":
        return _text(last.get("content"))
    return None


def parse_openai(body: Any) -> SimRequest:
    """The sim's view of a chat completions request; raises ValueError when it is unusable."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError("'model' is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    texts = [_text(m.get("content")) for m in messages if isinstance(m, dict)]
    users = [
        _text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "user"
    ]
    response_format = body.get("response_format") or {}
    schema = None
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise ValueError("'response_format.json_schema.schema' must be an object")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    return SimRequest(
        model=body["model"],
        prompt="\n".join(texts),
        input_tokens=word_count(texts),
        topic=users[-1] if users else "",
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        max_tokens=int(max_tokens) if max_tokens is not None else None,
        schema=schema,
        json_object=response_format.get("type") == "json_object",
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        tool_result=_tool_result(messages),
    )


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    state.stats.started("chat.completions")
    if not state.authorized(request):
        state.stats.ended("failed", 401)
        return openai_error(401, "Incorrect API key provided.")
    try:
        sim_request = parse_openai(orjson.loads(await request.body()))
    except ValueError as exc:
        state.stats.ended("failed", 400)
        return openai_error(400, str(exc))
    plan = state.plan(sim_request)
    if plan.fate is Fate.FAIL:
        state.stats.ended("failed", plan.knobs.fail_status)
        headers = error_headers(plan.knobs)
        return openai_error(plan.knobs.fail_status, "The simulated upstream failed.", headers)
    if sim_request.stream:
        body = guarded(state, plan, _chunks(sim_request, plan))
        return StreamingResponse(body, media_type="text/event-stream")
    return await _complete(request, state, sim_request, plan)


async def _complete(request: Request, state: SimState, sim: SimRequest, plan: Plan) -> Response:
    if plan.fate is Fate.HANG:
        await wait_for_disconnect(request.receive)
        state.stats.ended("hung")
        return Response(status_code=499)
    await non_stream_delay(plan)
    if plan.malformed:
        state.stats.ended("malformed")
        return Response(_MALFORMED[6:30], media_type="application/json")
    body = orjson.dumps(_completion(sim, plan))
    if plan.drop_after is not None:
        return StreamingResponse(guarded(state, plan, _half_then_drop(body)))
    state.stats.ended(plan.outcome)
    return Response(body, media_type="application/json")


async def _half_then_drop(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise SimulatedDrop


def _completion(sim: SimRequest, plan: Plan) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{secrets.token_hex(8)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": sim.model,
        "choices": [
            {
                "index": 0,
                "message": _reply_message(plan),
                "logprobs": None,
                "finish_reason": _finish(plan),
            }
        ],
        "usage": _usage(sim, len(plan.tokens)),
    }


def _reply_message(plan: Plan) -> dict[str, Any]:
    if plan.tool is None:
        return {"role": "assistant", "content": plan.text, "refusal": None}
    return {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": f"call_{plan.call_id}",
                "type": "function",
                "function": {"name": plan.tool, "arguments": plan.text},
            }
        ],
    }


def _finish(plan: Plan) -> str:
    return "tool_calls" if plan.tool is not None and plan.finish == "stop" else plan.finish


def _usage(sim: SimRequest, output_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": sim.input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": sim.input_tokens + output_tokens,
    }


class _Encoder:
    """Chunk bytes for one stream; token chunks are a fixed prefix and suffix around the text."""

    def __init__(self, sim: SimRequest) -> None:
        self.sim = sim
        self.head = {
            "id": f"chatcmpl-{secrets.token_hex(8)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": sim.model,
            "system_fingerprint": None,
        }
        self.usage_tail: dict[str, Any] = {"usage": None} if sim.include_usage else {}
        empty = self.chunk({"content": ""}, None)
        self.prefix, _, self.suffix = empty.partition(b'"content":""')
        self.prefix += b'"content":'

    def chunk(self, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self.event({**self.head, "choices": [choice], **self.usage_tail})

    def token(self, text: str) -> bytes:
        return self.prefix + orjson.dumps(text) + self.suffix

    def call_start(self, plan: Plan) -> bytes:
        """The first chunk of a tool call, as OpenAI streams one: its id, type and name."""
        call = {
            "index": 0,
            "id": f"call_{plan.call_id}",
            "type": "function",
            "function": {"name": plan.tool, "arguments": ""},
        }
        return self.chunk({"role": "assistant", "content": None, "tool_calls": [call]}, None)

    def call_piece(self, text: str) -> bytes:
        return self.chunk({"tool_calls": [{"index": 0, "function": {"arguments": text}}]}, None)

    def usage(self, output_tokens: int) -> bytes:
        return self.event({**self.head, "choices": [], "usage": _usage(self.sim, output_tokens)})

    @staticmethod
    def event(data: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(data) + b"\n\n"


async def _chunks(sim: SimRequest, plan: Plan) -> AsyncIterator[bytes]:
    if plan.fate is Fate.HANG:
        await hang_forever()
    encoder = _Encoder(sim)
    await first_token_delay(plan.knobs)
    if plan.tool is None:
        yield encoder.chunk({"role": "assistant", "content": "", "refusal": None}, None)
    else:
        yield encoder.call_start(plan)
    if plan.malformed:
        yield _MALFORMED
        return
    piece = encoder.token if plan.tool is None else encoder.call_piece
    sent = 0
    async for token in paced(plan.tokens, plan.knobs):
        if sent == plan.drop_after:
            raise SimulatedDrop
        yield piece(token)
        sent += 1
    if plan.drop_after is not None:
        raise SimulatedDrop
    yield encoder.chunk({}, _finish(plan))
    if sim.include_usage:
        yield encoder.usage(sent)
    yield _DONE
