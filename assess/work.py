"""One claimed job, start to finish: filter, gather the turns, assess, store (idempotently)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from assess.assessor import AssessCall, Assessor, AssessRequest, InvalidAfterRetry
from assess.errors import AssessUnavailable
from assess.filter import Scope, TurnFacts, buffer_room, decide
from assess.rubric import AssessKind, FocusSpec, TurnText
from assess.validation import Answer
from db import focuses as focus_db
from db import interactions as turns_db
from db import jobs as jobs_db
from db.assessments import AssessmentRow, NewAssessment, store_job_result
from db.interactions import InteractionRow
from db.jobs import JobRow
from db.pool import Executor, Pool
from db.prompt_runs import NewPromptRun, insert_prompt_run

__all__ = ["DEFAULT_FOCUSES", "JobOutcome", "JobRules", "run_job"]

log = logging.getLogger("coach.assess")

DEFAULT_FOCUSES = ("clarity", "structure")
SUMMARY_TURNS = 30
_GROUP_NS = uuid.UUID("6f1c2a52-5d0e-4f57-9a8e-0c3bb1d1c0de")


@dataclass(frozen=True, slots=True)
class JobRules:
    buffer_min_turns: int = 3
    buffer_max_turns: int = 6
    max_attempts: int = 5
    retry_delay_s: float = 30.0
    call_timeout_s: float = 45.0


@dataclass(frozen=True, slots=True)
class JobOutcome:
    job_id: int
    status: str  # done | failed | retry | lost
    scope: Scope | None
    rows: tuple[AssessmentRow, ...] = ()


async def run_job(
    pool: Pool,
    assessor: Assessor,
    job: JobRow,
    rules: JobRules,
    *,
    job_turn: turns_db.JobTurn | None = None,
) -> JobOutcome:
    """Run one claimed job; every path leaves it done, failed, pending again, or lost.
    `job_turn`: the job's turn as read with its claim (`claim_job_with_turn`), else read here."""
    if job.kind == "session_summary":
        turns = await turns_db.recent_interactions(pool, job.session_id, SUMMARY_TURNS)
        if not turns:
            return await _unassessed(pool, job, "none", None, None)
        return await _assess(pool, assessor, job, rules, "session_summary", turns)
    assert job.interaction_id is not None
    if job.scope == "interaction":  # asked for (`assessment.request`): the filter is not asked
        return await _requested(pool, assessor, job, rules, job.interaction_id)
    # A re-run reuses the turns the job took before (`group`).
    if job_turn is None:
        job_turn = await turns_db.job_turn(pool, job.id, job.interaction_id)
    turn, group = job_turn.turn, job_turn.taken
    if group:
        turns = await turns_db.interactions_by_ids(pool, group)
    elif turn is None:
        return await _unassessed(pool, job, "none", None, None)
    else:
        taken = await _take_turns(pool, job, turn, rules)
        if isinstance(taken, JobOutcome):
            return taken
        turns = taken
    kind: AssessKind = "interaction" if len(turns) == 1 else "multi_turn"
    return await _assess(pool, assessor, job, rules, kind, turns)


async def _take_turns(
    pool: Pool, job: JobRow, turn: InteractionRow, rules: JobRules
) -> list[InteractionRow] | JobOutcome:
    """The turns this job assesses (its own, alone or with the buffered turns of its session),
    or the job's outcome when it assesses none: filtered out, left in the buffer, or its turn
    taken by another job's group."""
    alone = _scope(turn, 0, rules)  # what the words alone decide: no lock and no count
    if alone == "none":
        return await _unassessed(pool, job, "none", turn.id, "skipped")
    if alone == "interaction":  # this turn by itself: the buffer is not touched
        turns = await turns_db.claim_group(pool, job.id, turn.id, 1)
    else:
        # Counting the session's buffer and adding to it (or taking from it) under the
        # session's lock: two jobs of one session deciding at once would each miss the
        # other's turn and both buffer, one multi-turn group late.
        room = buffer_room(rules.buffer_min_turns, rules.buffer_max_turns)
        async with turns_db.buffer_lock(pool, turn.session_id) as conn:
            decision = await turns_db.buffer_if_room(conn, job.id, job.attempts, turn, room=room)
            if decision.buffered or decision.lost:
                return JobOutcome(job.id, "lost" if decision.lost else "done", "buffer")
            turns = await turns_db.claim_group(conn, job.id, turn.id, rules.buffer_max_turns)
    if not turns:  # another job's multi-turn group took this turn
        return await _unassessed(pool, job, "none", None, None)
    return turns


async def _requested(
    pool: Pool, assessor: Assessor, job: JobRow, rules: JobRules, interaction_id: int
) -> JobOutcome:
    """Assess this one turn now. It is taken from the buffer if no job holds it yet, so its own
    turn job does not assess it again; one assessed already is assessed once more, as asked."""
    turn = await turns_db.get_interaction(pool, interaction_id)
    if turn is None:
        return await _unassessed(pool, job, "none", None, None)
    async with turns_db.buffer_lock(pool, turn.session_id) as conn:
        await turns_db.claim_group(conn, job.id, turn.id, 1)
    return await _assess(pool, assessor, job, rules, "interaction", [turn])


def _scope(turn: InteractionRow, buffered: int, rules: JobRules) -> Scope:
    facts = TurnFacts(turn.user_text, turn.reply_text, turn.status, turn.audio_in_ms)
    return decide(
        facts, buffered, min_turns=rules.buffer_min_turns, max_turns=rules.buffer_max_turns
    )


async def _unassessed(
    db: Executor, job: JobRow, scope: Scope, interaction_id: int | None, state: str | None
) -> JobOutcome:
    ok = await jobs_db.finish_unassessed(
        db, job.id, job.attempts, scope, interaction_id=interaction_id, state=state
    )
    return JobOutcome(job.id, "done" if ok else "lost", scope)


async def _focuses(pool: Pool, job: JobRow, turns: list[InteractionRow]) -> tuple[FocusSpec, ...]:
    catalog, active = await focus_db.catalog_and_active(pool, job.user_id)
    known = {f.id: f for f in catalog}
    asked = [f for t in turns for f in t.focus_ids if f in known]
    chosen = list(dict.fromkeys(asked))[:3]
    if not chosen:
        chosen = [f.id for f in active]
    if not chosen:
        chosen = [f for f in DEFAULT_FOCUSES if f in known]
    return tuple(FocusSpec(f, known[f].name, known[f].description) for f in chosen)


async def _assess(
    pool: Pool,
    assessor: Assessor,
    job: JobRow,
    rules: JobRules,
    kind: AssessKind,
    turns: list[InteractionRow],
) -> JobOutcome:
    scope: Scope = kind
    request = AssessRequest(
        f"assess-{job.id}-{job.attempts}",
        kind,
        await _focuses(pool, job, turns),
        tuple(TurnText(t.id, t.user_text, t.reply_text) for t in turns),
    )
    try:
        async with asyncio.timeout(rules.call_timeout_s):
            result = await assessor.assess(request)
    except InvalidAfterRetry as exc:
        await _record_calls(pool, job, assessor, exc.calls)
        ok = await jobs_db.fail_job(pool, job.id, job.attempts, f"invalid answer: {exc.reason}")
        return JobOutcome(job.id, "failed" if ok else "lost", scope)
    except (AssessUnavailable, TimeoutError) as exc:
        reason = exc.reason if isinstance(exc, AssessUnavailable) else "assessment timed out"
        return await _retry_or_fail(pool, job, rules, scope, reason)
    await _record_calls(pool, job, assessor, result.calls[:-1])
    rows = await store_job_result(
        pool,
        job_id=job.id,
        attempt=job.attempts,
        scope=scope,
        rows=_rows(job, result.answer, assessor.rubric_version),
        interaction_ids=[] if kind == "session_summary" else [t.id for t in turns],
        run=_prompt_run(job, assessor, result.calls[-1]),
    )
    if rows is None:
        return JobOutcome(job.id, "lost", scope)
    return JobOutcome(job.id, "done", scope, tuple(rows))


async def _retry_or_fail(
    pool: Pool, job: JobRow, rules: JobRules, scope: Scope, reason: str
) -> JobOutcome:
    if job.attempts >= rules.max_attempts:
        ok = await jobs_db.fail_job(pool, job.id, job.attempts, reason)
        return JobOutcome(job.id, "failed" if ok else "lost", scope)
    delay = rules.retry_delay_s * job.attempts
    ok = await jobs_db.retry_job_later(pool, job.id, job.attempts, reason, delay)
    return JobOutcome(job.id, "retry" if ok else "lost", scope)


def _rows(job: JobRow, answer: Answer, rubric_version: str) -> list[NewAssessment]:
    group = uuid.uuid5(_GROUP_NS, str(job.id)) if answer.kind == "multi_turn" else None
    return [
        NewAssessment(
            user_id=job.user_id,
            session_id=job.session_id,
            interaction_ids=answer.interaction_ids,
            focus_id=a.focus,
            kind=answer.kind,
            category=a.category,
            score=a.score,
            explanation=a.explanation,
            rubric_version=rubric_version,
            errors=a.errors,
            tags=a.tags,
            group_id=group,
        )
        for a in answer.assessments
    ]


def _prompt_run(job: JobRow, assessor: Assessor, call: AssessCall) -> NewPromptRun:
    return NewPromptRun(
        request_id=call.request_id,
        purpose="assess",
        status=call.status,
        latency_ms=call.latency_ms,
        user_id=job.user_id,
        session_id=job.session_id,
        job_id=job.id,
        provider=call.provider,
        model=call.model,
        rubric_version=assessor.rubric_version,
        input_tokens=call.usage.input_tokens,
        output_tokens=call.usage.output_tokens,
        ttft_ms=call.ttft_ms,
        cost_usd=call.cost_usd,
    )


async def _record_calls(
    pool: Pool, job: JobRow, assessor: Assessor, calls: tuple[AssessCall, ...]
) -> None:
    for call in calls:
        await insert_prompt_run(pool, _prompt_run(job, assessor, call))
