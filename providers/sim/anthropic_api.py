"""The Anthropic side of the sim: `POST /v1/messages`, streamed or not.

A JSON-schema request is one tool whose `input_schema` is the schema, forced with
`tool_choice: {"type": "tool", "name": <that tool>}`; the answer is a `tool_use` block whose
input fits the schema (streamed as `input_json_delta` events), with stop reason `tool_use`.
Tools offered with `tool_choice` auto or any are called the same way when the message asks for
them (`providers.sim.tool_answer`); a last user turn of `tool_result` blocks gets text that
uses the result.
"""

from __future__ import annotations

import secrets
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

__all__ = ["anthropic_error", "messages", "parse_anthropic"]

_MALFORMED = b'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {\n\n'
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def anthropic_error(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """An error in Anthropic's shape, so the SDK raises its typed error for `status`."""
    kind = _ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_response(body, status, headers)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        return "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")
    return ""


def _forced_tool(body: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    choice = body.get("tool_choice") or {}
    if choice.get("type") != "tool":
        return None, None
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == choice.get("name"):
            schema = tool.get("input_schema")
            if not isinstance(schema, dict):
                raise ValueError("the forced tool needs an 'input_schema' object")
            return str(tool["name"]), schema
    raise ValueError(f"tool_choice names an unknown tool {choice.get('name')!r}")


def _tools(body: dict[str, Any]) -> tuple[SimTool, ...]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise ValueError("tools: Input should be a valid list")
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise ValueError(f"tools.{i}.name: Field required")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise ValueError(f"tools.{i}.input_schema: Field required")
        tools.append(SimTool(tool["name"], str(tool.get("description") or ""), schema))
    return tuple(tools)


def _tool_choice(body: dict[str, Any]) -> str:
    choice = body.get("tool_choice") or {"type": "auto"}
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "none", "tool"):
        raise ValueError("tool_choice.type: must be auto, any, none or tool")
    return "required" if kind == "any" else str(kind)


def _tool_result(messages: list[Any]) -> str | None:
    """The results of the last user turn's `tool_result` blocks, or None when it has none."""
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    if not results:
        return None
    return "\n".join(_result_text(b.get("content")) for b in results)


def _result_text(content: Any) -> str:
    if isinstance(content, list):
        return _text(content)
    return "" if content is None else str(content)


def parse_anthropic(body: Any) -> SimRequest:
    """The sim's view of a messages request; raises ValueError when it is unusable."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise ValueError("model: Field required")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError("max_tokens: Field required (an integer >= 1)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: at least one message is required")
    texts = [_text(body.get("system"))]
    texts += [_text(m.get("content")) for m in messages if isinstance(m, dict)]
    users = [
        text
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user" and (text := _text(m.get("content")))
    ]
    tool_name, schema = _forced_tool(body)
    return SimRequest(
        model=body["model"],
        prompt="\n".join(texts),
        input_tokens=word_count(texts),
        topic=users[-1] if users else "",
        stream=bool(body.get("stream")),
        max_tokens=max_tokens,
        schema=schema,
        tool_name=tool_name,
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        tool_result=_tool_result(messages),
    )


async def messages(request: Request) -> Response:
    state: SimState = request.app.state.sim
    state.stats.started("messages")
    if not state.authorized(request):
        state.stats.ended("failed", 401)
        return anthropic_error(401, "invalid x-api-key")
    try:
        sim_request = parse_anthropic(orjson.loads(await request.body()))
    except ValueError as exc:
        state.stats.ended("failed", 400)
        return anthropic_error(400, str(exc))
    plan = state.plan(sim_request)
    if plan.fate is Fate.FAIL:
        state.stats.ended("failed", plan.knobs.fail_status)
        headers = error_headers(plan.knobs)
        return anthropic_error(plan.knobs.fail_status, "The simulated upstream failed.", headers)
    if sim_request.stream:
        body = guarded(state, plan, _events(sim_request, plan))
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
        return Response(b'{"id": "msg_', media_type="application/json")
    body = orjson.dumps(_message(sim, plan, complete=True))
    if plan.drop_after is not None:
        return StreamingResponse(guarded(state, plan, _half_then_drop(body)))
    state.stats.ended(plan.outcome)
    return Response(body, media_type="application/json")


async def _half_then_drop(body: bytes) -> AsyncIterator[bytes]:
    yield body[: len(body) // 2]
    raise SimulatedDrop


def _block(plan: Plan, *, complete: bool) -> dict[str, Any]:
    if plan.tool is None:
        return {"type": "text", "text": plan.text if complete else ""}
    tool_input: Any = {}
    if complete:
        try:
            tool_input = orjson.loads(plan.text)
        except orjson.JSONDecodeError:  # cut short by max_tokens: the real API sends {}
            tool_input = {}
    return {
        "type": "tool_use",
        "id": f"toolu_{plan.call_id}",
        "name": plan.tool,
        "input": tool_input,
    }


def _stop_reason(plan: Plan) -> str:
    if plan.tool is not None and plan.finish == "stop":
        return "tool_use"
    return _STOP_REASONS[plan.finish]


def _message(sim: SimRequest, plan: Plan, *, complete: bool) -> dict[str, Any]:
    return {
        "id": f"msg_{secrets.token_hex(8)}",
        "type": "message",
        "role": "assistant",
        "model": sim.model,
        "content": [_block(plan, complete=True)] if complete else [],
        "stop_reason": _stop_reason(plan) if complete else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": sim.input_tokens,
            "output_tokens": len(plan.tokens) if complete else 1,
        },
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(sim: SimRequest, plan: Plan) -> AsyncIterator[bytes]:
    if plan.fate is Fate.HANG:
        await hang_forever()
    await first_token_delay(plan.knobs)
    yield _event(
        "message_start", {"type": "message_start", "message": _message(sim, plan, complete=False)}
    )
    block = _block(plan, complete=False)
    yield _event(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    if plan.malformed:
        yield _MALFORMED
        return
    kind, field = (
        ("text_delta", "text") if plan.tool is None else ("input_json_delta", "partial_json")
    )
    prefix = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"' + kind.encode() + b'","' + field.encode() + b'":'
    )
    sent = 0
    async for token in paced(plan.tokens, plan.knobs):
        if sent == plan.drop_after:
            raise SimulatedDrop
        yield prefix + orjson.dumps(token) + b"}}\n\n"
        sent += 1
    if plan.drop_after is not None:
        raise SimulatedDrop
    yield _event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(plan), "stop_sequence": None},
            "usage": {"output_tokens": sent},
        },
    )
    yield _event("message_stop", {"type": "message_stop"})
