"""Tool calls in the sim: which offered tool a message asks for, with what arguments, and the
text that answers a tool's result.

A call is made when tools are offered (and `tool_choice` is not "none") and the last user
message asks for the user's own data: progress, sessions, assessments, drills or exercises, a
practice recommendation, "remember ...", "change my focus ...". The gateway's tool names are
matched by intent; other tools (a client's own, through the OpenAI-compatible route) by the
words of their name and description. A forced `tool_choice` ("required", or one tool) always
calls. Arguments fit the tool's parameters schema: the required ones made up
(`answer_for_schema`), and those the message grounds taken from it: a search's `query`, a
memory's `text`, enum values the message names (a focus such as `breathing`). Optional
arguments the message does not ground are left out, as a model would leave them. Everything is
reproducible from the seeded generator the caller passes.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from providers.sim.corpus import domain_of, reply_text
from providers.sim.schema_answer import answer_for_schema
from providers.sim.schema_check import schema_errors

__all__ = ["SimTool", "choose_tool", "tool_arguments", "tool_result_reply"]

# The gateway's tools, each with what a message says when it wants that one. Checked in order:
# "remember that my last session ..." is a memory, not a session listing.
_INTENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("remember", r"\bremember\b|\bkeep in mind\b|\bdon'?t forget\b"),
        ("propose_focus_change", r"\b(change|switch|set|update|move)\b.{0,30}\bfocus"),
        ("get_assessments", r"\bassess(ment)?s?\b|\bscores?\b|\bgraded?\b|\bratings?\b"),
        ("search_drills", r"\bdrills?\b|\bexercises?\b"),
        (
            "recommend_practice",
            r"\brecommend|\bwhat should i (practi[cs]e|work on|do)\b|\bpractice plan\b",
        ),
        ("get_progress", r"\bprogress\b|\bimprov(e|ed|ing|ement)\b|\bhow am i doing\b|\btrend"),
        ("list_sessions", r"\bsessions?\b|\bhistory\b|\blast time\b"),
    )
)
_KNOWN = frozenset(name for name, _ in _INTENTS)
_WORD = re.compile(r"[a-z]{4,}")
_STOP = frozenset(
    [
        "with",
        "that",
        "this",
        "from",
        "what",
        "your",
        "have",
        "about",
        "into",
        "when",
        "then",
        "them",
        "they",
        "their",
        "there",
        "which",
        "would",
        "could",
        "should",
        "does",
        "tool",
        "tools",
        "user",
        "users",
        "the",
        "data",
    ]
)
_REMEMBERED = re.compile(
    r"\b(?:remember|keep in mind|don'?t forget)\b[,:]?\s*(?:that\s+)?(.+)", re.I | re.S
)
_QUERY_FIELDS = ("query", "q", "search", "topic", "text")
_CONTENT_FIELDS = ("content", "fact", "memory", "note", "text")
_MAX_QUOTED = 6  # facts of a tool result quoted in the answer


@dataclass(frozen=True, slots=True)
class SimTool:
    """An offered tool, as the sim reads it from either vendor's request."""

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None


def choose_tool(tools: tuple[SimTool, ...], message: str, choice: str) -> SimTool | None:
    """The tool `message` asks for, or None. `choice`: "auto", "none", "required" or the name
    of the one tool forced."""
    if not tools or choice == "none":
        return None
    by_name = {tool.name: tool for tool in tools}
    if choice not in ("auto", "required"):
        return by_name.get(choice)
    for name, pattern in _INTENTS:
        if name in by_name and pattern.search(message):
            return by_name[name]
    if (matched := _by_words(tools, message)) is not None:
        return matched
    return tools[0] if choice == "required" else None


def _by_words(tools: tuple[SimTool, ...], message: str) -> SimTool | None:
    """The tool (not one of the gateway's own) whose name and description share the most words
    with the message."""
    words = set(_WORD.findall(message.lower())) - _STOP
    best, hits = None, 0
    for tool in tools:
        if tool.name in _KNOWN:
            continue
        own = set(_WORD.findall(f"{tool.name.replace('_', ' ')} {tool.description}".lower()))
        if (count := len(words & own)) > hits:
            best, hits = tool, count
    return best


def tool_arguments(tool: SimTool, message: str, *, rng: random.Random, context: str) -> str:
    """The call's arguments as JSON text, fitting the tool's parameters schema; `{}` for a
    schema too odd to fill (a client's own tools may hold anything), as the sim must answer."""
    try:
        return _arguments(tool, message, rng=rng, context=context)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError):
        return "{}"


def _arguments(tool: SimTool, message: str, *, rng: random.Random, context: str) -> str:
    schema = tool.parameters or {"type": "object", "properties": {}}
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    needed = {**schema, "properties": {k: v for k, v in properties.items() if k in required}}
    value = answer_for_schema(needed, rng=rng, context=context, topic=message)
    if not isinstance(value, dict):
        return json.dumps(value)
    filled = {**value, **_from_message(tool, properties, message)}
    return json.dumps(filled if not schema_errors(schema, filled) else value)


def _from_message(tool: SimTool, properties: dict[str, Any], message: str) -> dict[str, Any]:
    """Fields whose value the message gives: a search's query, a memory's text, enum values."""
    values: dict[str, Any] = {}
    remembered = _REMEMBERED.search(message)
    words = _WORD.findall(message.lower())
    for name, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        if (named := _named_values(prop, words)) is not None:
            values[name] = named
        elif prop.get("type") != "string":
            continue
        elif remembered and name in _CONTENT_FIELDS:
            values[name] = remembered.group(1).strip().rstrip(".!?") or message.strip()
        elif name in _QUERY_FIELDS and not remembered:
            values[name] = _query(message, tool)
    return values


def _named_values(prop: dict[str, Any], words: list[str]) -> Any:
    """The enum values (of a field, or of an array's items) that the message names, or None."""
    items = prop.get("items") if prop.get("type") == "array" else None
    options = (items if isinstance(items, dict) else prop).get("enum")
    if not isinstance(options, list):
        return None
    named = [v for v in options if isinstance(v, str) and _names(v, words)]
    if not named:
        return None
    if items is None:
        return named[0]
    return named[: int(prop.get("maxItems", len(named)))]


def _names(value: str, words: list[str]) -> bool:
    """`breathing` is named by "breath", `filler_words` by "fillers"."""
    parts = [p for p in re.split(r"[^a-z]+", value.lower()) if len(p) >= 4]
    return any(w.startswith(p) or p.startswith(w) for p in parts for w in words)


def _query(message: str, tool: SimTool) -> str:
    words = [w for w in _WORD.findall(message.lower()) if w not in _STOP]
    return " ".join(words[:6]) or tool.name.replace("_", " ")


def tool_result_reply(
    result: str, topic: str, *, rng: random.Random, approx_tokens: int, context: str = ""
) -> str:
    """Text that answers with a tool's `result`: the facts it holds (numbers, ids, names)
    quoted, then a tip of the conversation's domain."""
    facts = _facts(result)
    if facts:
        head = "From your data: " + "; ".join(facts) + "."
    elif result.strip():
        head = f"The tool said: {result.strip()[:160]}."
    else:
        head = "The tool found nothing for you yet."
    tip = reply_text(rng, max(approx_tokens - len(head.split()), 1), domain_of(topic, context))
    return f"{head} {tip}"


def _facts(result: str) -> list[str]:
    """`key value` for the first scalar leaves of a JSON result (its error, when it is one)."""
    try:
        data = json.loads(result)
    except ValueError:
        return []
    facts: list[str] = []
    _walk(data, "", facts)
    return facts[:_MAX_QUOTED]


def _walk(value: Any, key: str, facts: list[str]) -> None:
    if len(facts) >= _MAX_QUOTED:
        return
    if isinstance(value, dict):
        for name, item in value.items():
            _walk(item, str(name), facts)
    elif isinstance(value, list):
        for item in value:
            _walk(item, key, facts)
    elif value is not None and not isinstance(value, bool):
        text = str(value)
        if len(text) <= 80:
            facts.append(f"{key.replace('_', ' ')} {text}" if key else text)
