"""Running the agent's server tools (`gateway.tool_specs`) on the caller's own data.

`run_tool(ctx, call)` never raises for a bad call: malformed JSON arguments, arguments that do
not fit the schema, an unknown tool, a tool that fails or runs past `[agent] tool_timeout_s`
all come back as `ToolOutcome(ok=False)` with an error the model can read and act on. Every
query is keyed by `ctx.user_id`, the authenticated caller, never by an id the model wrote; a
session id the model passes only narrows the caller's own rows. The write tools store a
pending change and nothing else (`gateway.changes`). Each call is one span, `tool {name}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import trace

from assess.facts import user_facts
from db.assessments import AssessmentRow, user_assessments
from db.changes import ChangeRow
from db.pool import DATABASE_ERRORS, Pool
from db.sessions import list_sessions
from gateway.changes import ChangeInvalid, propose_focus_change, propose_memory
from gateway.ids import hash_id
from gateway.knowledge import search_catalog
from gateway.quotas import QuotaExceeded
from gateway.runtime import Gateway
from gateway.skill_jobs import practice_job
from gateway.skills import SkillEngine
from gateway.tool_args import ArgumentError, parse_arguments
from gateway.tool_specs import TOOL_SPECS
from providers.chat import ToolCall, ToolSpec

__all__ = ["ToolContext", "ToolOutcome", "run_tool"]

log = logging.getLogger("coach.agent")

_EXPLANATION_CHARS = 300
_SUMMARY_CHARS = 120


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who a tool runs for (the authenticated caller) and what it reaches (the gateway)."""

    gateway: Gateway
    user_id: str
    session_id: str | None = None
    tracer: trace.Tracer | None = None  # default: the global provider's `coach.agent`


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """A tool's result. `content` is JSON for the model (at most `[agent] tool_output_bytes`);
    `summary` a short line for the client (`response.tool_result`); `change` the proposed
    change (`change.proposed`) when the tool made one."""

    ok: bool
    content: str
    summary: str
    change: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    data: dict[str, Any]
    summary: str
    change: ChangeRow | None = None


_Run = Callable[[ToolContext, Pool, dict[str, Any]], Awaitable[_Answer]]


async def run_tool(ctx: ToolContext, call: ToolCall) -> ToolOutcome:
    """Run `call` for `ctx.user_id`; see the module docstring."""
    tracer = ctx.tracer or trace.get_tracer("coach.agent")
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": call.name,
        "gen_ai.tool.call.id": call.id,
        "coach.user.hash": hash_id(ctx.user_id),
    }
    with tracer.start_as_current_span(f"tool {call.name}", attributes=attributes) as span:
        outcome = await _run(ctx, call)
        span.set_attribute("coach.tool.ok", outcome.ok)
        if not outcome.ok:
            span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.summary))
        return outcome


async def _run(ctx: ToolContext, call: ToolCall) -> ToolOutcome:
    found = _TOOLS.get(call.name)
    if found is None:
        known = ", ".join(_TOOLS)
        return _failed(f"unknown tool {call.name[:64]!r}; the tools are: {known}")
    spec, run = found
    try:
        args = parse_arguments(call.arguments, spec.parameters)
    except ArgumentError as exc:
        return _failed(f"invalid arguments for {spec.name}: {exc}")
    persistence = ctx.gateway.persistence
    if persistence is None:
        return _failed("the user's data is not available: this gateway runs without a database")
    try:
        async with asyncio.timeout(_timeout_s(ctx, spec.name)):
            answer = await run(ctx, persistence.pool, args)
    except TimeoutError:
        return _failed(f"{spec.name} took too long; answer without it")
    except ChangeInvalid as exc:
        return _failed(f"{spec.name} refused: {exc}")
    except QuotaExceeded:
        return _failed(f"{spec.name} is rate limited for this user now; try again later")
    except DATABASE_ERRORS as exc:
        log.warning("tool %s: database error %s", spec.name, type(exc).__name__)
        return _failed("the user's data is not reachable right now; answer without it")
    except Exception:
        log.exception("tool failed", extra={"tool": spec.name})
        return _failed(f"{spec.name} failed; answer without it")
    limit = ctx.gateway.settings.agent.tool_output_bytes
    change = None if answer.change is None else answer.change.to_json()
    return ToolOutcome(True, _bounded(answer.data, limit), _short(answer.summary), change)


def _timeout_s(ctx: ToolContext, name: str) -> float:
    settings = ctx.gateway.settings
    if name == "recommend_practice":  # a model call of its own, bounded by its skill setting
        return max(settings.agent.tool_timeout_s, settings.skills.practice.timeout_s + 2)
    return settings.agent.tool_timeout_s


def _failed(error: str) -> ToolOutcome:
    return ToolOutcome(False, orjson.dumps({"error": error}).decode(), _short(error))


def _short(text: str) -> str:
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


def _bounded(data: dict[str, Any], limit: int) -> str:
    """`data` as JSON of at most `limit` bytes: items are dropped from the end of its longest
    list (and `truncated` set) until it fits."""
    text = orjson.dumps(data)
    while len(text) > limit:
        lists = [k for k, v in data.items() if isinstance(v, list) and v]
        if not lists:
            return orjson.dumps({"truncated": True, "error": "the result was too large"}).decode()
        longest = max(lists, key=lambda k: len(orjson.dumps(data[k])))
        data = {**data, longest: data[longest][:-1], "truncated": True}
        text = orjson.dumps(data)
    return text.decode()


# ------------------------------------------------------------------ read tools


async def _get_progress(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    facts = await user_facts(pool, ctx.user_id)
    data = {
        **facts.to_json(),
        "active_focus_ids": [f.focus_id for f in facts.focuses if f.active],
    }
    levels = [f"{f.focus_id} {f.level}" for f in facts.focuses if f.level is not None]
    shown = ", ".join(levels[:3]) or "no scores yet"
    return _Answer(data, f"Read your progress ({shown}; {facts.sessions_7d} sessions in 7 days)")


async def _list_sessions(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    rows = await list_sessions(pool, ctx.user_id, limit=args.get("limit", 5))
    sessions = [
        {
            "id": r.id,
            "opened_at": r.opened_at.isoformat(),
            "last_active_at": r.last_active_at.isoformat(),
            "closed": r.closed_at is not None,
            "turns": r.interaction_count,
        }
        for r in rows
    ]
    return _Answer({"sessions": sessions}, f"Listed your {len(rows)} most recent sessions")


async def _get_assessments(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    rows = await user_assessments(
        pool,
        ctx.user_id,
        limit=args.get("limit", 5),
        session_id=args.get("session_id"),
        focus_id=args.get("focus_id"),
    )
    return _Answer(
        {"assessments": [_assessment(r) for r in rows]}, f"Read {len(rows)} of your assessments"
    )


def _assessment(row: AssessmentRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "session_id": row.session_id,
        "focus_id": row.focus_id,
        "kind": row.kind,
        "category": row.category,
        "score": row.score,
        "explanation": row.explanation[:_EXPLANATION_CHARS],
        "errors": [
            {"key": e.get("key"), "message": e.get("message"), "severity": e.get("severity")}
            for e in row.errors[:3]
        ],
        "created_at": row.created_at.isoformat(),
    }


async def _search_drills(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    hits = await search_catalog(
        pool,
        ctx.gateway.drills,
        args["query"],
        focus_id=args.get("focus_id"),
        limit=args.get("limit", 5),
    )
    data: dict[str, Any] = {"results": [h.to_json() for h in hits]}
    if not hits:
        data["hint"] = "nothing matched: try other words, or search without focus_id"
    drills = sum(1 for h in hits if h.kind == "drill")
    return _Answer(data, f"Searched drills: {drills} drills, {len(hits) - drills} notes")


async def _recommend_practice(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    gateway = ctx.gateway
    settings = gateway.settings.skills.practice
    engine = SkillEngine(router=gateway.router, quotas=gateway.quotas, pool=pool, settings=settings)
    facts = await user_facts(pool, ctx.user_id)
    job = practice_job(ctx.user_id, facts, gateway.drills, settings.fallback)
    outcome = await engine.run(ctx.user_id, job)
    body = outcome.result.body
    drills = [gateway.drills.get(i) for i in body.get("drill_ids", [])]
    data = {
        "focus_id": body.get("focus_id"),
        "minutes": body.get("minutes"),
        "reason": body.get("reason"),
        "drills": [{"id": d.id, "title": d.title, "minutes": d.minutes} for d in drills if d],
        "source": outcome.source,
    }
    summary = f"Recommended {data['minutes']} minutes on {data['focus_id']}"
    return _Answer(data, summary)


# ------------------------------------------------------------------ write tools (proposals)

_PENDING = "Nothing is changed until the user accepts this proposal in the app."


async def _propose_focus_change(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    change = await propose_focus_change(
        pool,
        ctx.user_id,
        ctx.session_id,
        args["focus_ids"],
        ttl_s=ctx.gateway.settings.agent.change_ttl_h * 3600,
        reason=args.get("reason", ""),
    )
    summary = f"Proposed focuses {', '.join(args['focus_ids'])}: waiting for your OK"
    return _Answer(_proposal(change), summary, change)


async def _remember(ctx: ToolContext, pool: Pool, args: dict[str, Any]) -> _Answer:
    change = await propose_memory(
        pool,
        ctx.user_id,
        ctx.session_id,
        args["text"],
        ttl_s=ctx.gateway.settings.agent.change_ttl_h * 3600,
    )
    return _Answer(_proposal(change), "Proposed a memory: waiting for your OK", change)


def _proposal(change: ChangeRow) -> dict[str, Any]:
    return {
        "change_id": change.id,
        "kind": change.kind,
        "status": change.status,
        "payload": change.payload,
        "expires_at": change.expires_at.isoformat(),
        "note": _PENDING,
    }


_RUNS: dict[str, _Run] = {
    "get_progress": _get_progress,
    "list_sessions": _list_sessions,
    "get_assessments": _get_assessments,
    "search_drills": _search_drills,
    "recommend_practice": _recommend_practice,
    "propose_focus_change": _propose_focus_change,
    "remember": _remember,
}
_TOOLS: dict[str, tuple[ToolSpec, _Run]] = {s.name: (s, _RUNS[s.name]) for s in TOOL_SPECS}
