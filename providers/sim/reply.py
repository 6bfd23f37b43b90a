"""From a parsed request to what the sim will do: fail, hang, or send these tokens."""

from __future__ import annotations

import asyncio
import enum
import json
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from providers.sim.corpus import domain_of, reply_rng, reply_text, tokenize
from providers.sim.knobs import SimKnobs
from providers.sim.schema_answer import answer_for_schema, broken_answer
from providers.sim.tool_answer import SimTool, choose_tool, tool_arguments, tool_result_reply

__all__ = [
    "Fate",
    "Plan",
    "SimRequest",
    "first_token_delay",
    "non_stream_delay",
    "paced",
    "plan_reply",
    "word_count",
]


class Fate(enum.Enum):
    FAIL = "failed"
    HANG = "hung"
    SEND = "ok"


@dataclass(frozen=True, slots=True)
class SimRequest:
    """The parts of an OpenAI or Anthropic request that the sim looks at."""

    model: str
    prompt: str  # every message's text, one per line
    input_tokens: int
    topic: str = ""  # the last user message: what the reply should be about
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    schema: dict[str, Any] | None = None
    json_object: bool = False  # OpenAI `response_format: {"type": "json_object"}`
    tool_name: str | None = None  # Anthropic: the forced tool that carries the schema
    tools: tuple[SimTool, ...] = ()  # tools offered
    tool_choice: str = "auto"  # "auto" | "none" | "required" | the name of the tool forced
    tool_result: str | None = None  # the last message is a tool's result: this one


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send. `drop_after` set = close abruptly after that many tokens."""

    fate: Fate
    knobs: SimKnobs
    tokens: Sequence[str] = ()
    finish: str = "stop"  # "stop" | "length"
    outcome: str = "ok"  # the outcome when everything is sent: "ok" | "invalid_json"
    drop_after: int | None = None
    malformed: bool = False
    # The answer calls this tool, `tokens` being pieces of its arguments' JSON text.
    tool: str | None = None
    call_id: str = ""

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def word_count(texts: Sequence[str]) -> int:
    """The rough token count of the input: its words."""
    return sum(len(text.split()) for text in texts)


def _chance(rng: random.Random, rate: float) -> bool:
    return rate >= 1 or (rate > 0 and rng.random() < rate)


def plan_reply(request: SimRequest, base: SimKnobs, fate_rng: random.Random) -> Plan:
    """Decide the request's fate with `fate_rng`, and its words from the seed and prompt."""
    knobs = base.for_model(request.model)
    if _chance(fate_rng, knobs.fail_rate):
        return Plan(Fate.FAIL, knobs)
    if _chance(fate_rng, knobs.hang_rate):
        return Plan(Fate.HANG, knobs)
    malformed = _chance(fate_rng, knobs.malformed_rate)
    drop = knobs.drop_after > 0 and _chance(fate_rng, knobs.drop_rate)
    rng = reply_rng(knobs.seed, request.model, request.prompt)
    called = _called_tool(request)
    structured = request.schema is not None or called is not None
    invalid = structured and _chance(fate_rng, knobs.invalid_json_rate)
    if called is not None:
        arguments = tool_arguments(called, request.topic, rng=rng, context=request.prompt)
        tokens = tokenize(arguments[:-1] if invalid else arguments)  # invalid: cut short
    else:
        tokens = tokenize(_reply(request, knobs, rng, invalid=invalid))
    finish = "stop"
    if request.max_tokens is not None and len(tokens) > request.max_tokens:
        tokens, finish = tokens[: request.max_tokens], "length"
    return Plan(
        Fate.SEND,
        knobs,
        tokens,
        finish,
        outcome="invalid_json" if invalid else "ok",
        drop_after=knobs.drop_after if drop else None,
        malformed=malformed,
        tool=called.name if called is not None else request.tool_name,
        call_id=f"{rng.getrandbits(64):016x}",
    )


def _called_tool(request: SimRequest) -> SimTool | None:
    """The offered tool the answer calls: after a tool's result only a forced one (the model
    has what it asked for)."""
    if request.tool_name is not None or not request.tools:
        return None  # Anthropic's forced tool is answered like a JSON schema
    if request.tool_result is not None and request.tool_choice == "auto":
        return None
    return choose_tool(request.tools, request.topic, request.tool_choice)


def _reply(request: SimRequest, knobs: SimKnobs, rng: random.Random, *, invalid: bool) -> str:
    if request.schema is not None:
        make = broken_answer if invalid else answer_for_schema
        answer = make(request.schema, rng=rng, context=request.prompt, topic=request.topic)
        return json.dumps(answer)
    if request.tool_result is not None:
        return tool_result_reply(
            request.tool_result,
            request.topic,
            rng=rng,
            approx_tokens=knobs.reply_tokens,
            context=request.prompt,
        )
    text = reply_text(rng, knobs.reply_tokens, domain_of(request.topic, request.prompt))
    return json.dumps({"answer": text}) if request.json_object else text


async def first_token_delay(knobs: SimKnobs) -> None:
    if knobs.ttft_ms > 0:
        await asyncio.sleep(knobs.ttft_ms / 1000)


async def paced(tokens: Sequence[str], knobs: SimKnobs) -> AsyncIterator[str]:
    """Yield `tokens` at `tokens_per_s`, on a schedule so that slow sends do not add drift."""
    loop = asyncio.get_running_loop()
    interval = 1 / knobs.tokens_per_s if knobs.tokens_per_s > 0 else 0.0
    start = loop.time()
    for index, token in enumerate(tokens):
        if interval and (delay := start + index * interval - loop.time()) > 0:
            await asyncio.sleep(delay)
        yield token


async def non_stream_delay(plan: Plan) -> None:
    """The time a non-streamed answer takes: first-token delay plus every token."""
    rate = plan.knobs.tokens_per_s
    seconds = plan.knobs.ttft_ms / 1000 + (len(plan.tokens) / rate if rate > 0 else 0)
    if seconds > 0:
        await asyncio.sleep(seconds)
