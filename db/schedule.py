"""`scheduled_ticks`: a scheduled job's tick is claimed by one process at a time.

A claim is a lease: the claimer renews it with each batch it finishes (recording the last user
done), and marks the tick finished at the end. A tick whose lease ran out unfinished (its
claimer died) can be claimed again and goes on after the recorded user, so each user is done
once per tick however many processes run the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from db.pool import Executor

__all__ = ["TickClaim", "active_users", "advance_tick", "claim_tick", "finish_tick"]


@dataclass(frozen=True, slots=True)
class TickClaim:
    job: str
    tick: datetime
    owner: str
    cursor: str  # the last user done; '' before the first
    users_done: int


async def claim_tick(
    db: Executor, job: str, tick: datetime, owner: str, *, lease_s: float
) -> TickClaim | None:
    """Claim `job`'s `tick` for `owner`: a new tick, or one whose claimer's lease ran out before
    it finished. None when another process holds it or it is finished."""
    row = await db.fetchrow(
        "INSERT INTO scheduled_ticks (job, tick, owner, lease_until)"
        " VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))"
        " ON CONFLICT (job, tick) DO UPDATE"
        "  SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until"
        "  WHERE scheduled_ticks.finished_at IS NULL"
        "    AND scheduled_ticks.lease_until < clock_timestamp()"
        " RETURNING cursor, users_done",
        job,
        tick,
        owner,
        lease_s,
    )
    if row is None:
        return None
    return TickClaim(job, tick, owner, row["cursor"], row["users_done"])


async def advance_tick(
    db: Executor, claim: TickClaim, cursor: str, users_done: int, *, lease_s: float
) -> TickClaim | None:
    """Record progress and renew the lease; None when the lease was lost (another process took
    the tick over), and the caller must stop."""
    updated = await db.fetchval(
        "UPDATE scheduled_ticks SET cursor = $4, users_done = $5,"
        " lease_until = clock_timestamp() + make_interval(secs => $6)"
        " WHERE job = $1 AND tick = $2 AND owner = $3 AND finished_at IS NULL RETURNING 1",
        claim.job,
        claim.tick,
        claim.owner,
        cursor,
        users_done,
        lease_s,
    )
    if updated is None:
        return None
    return TickClaim(claim.job, claim.tick, claim.owner, cursor, users_done)


async def finish_tick(db: Executor, claim: TickClaim) -> bool:
    """Mark the tick done; False when the lease was lost meanwhile."""
    done = await db.fetchval(
        "UPDATE scheduled_ticks SET finished_at = clock_timestamp()"
        " WHERE job = $1 AND tick = $2 AND owner = $3 AND finished_at IS NULL RETURNING 1",
        claim.job,
        claim.tick,
        claim.owner,
    )
    return done is not None


async def active_users(db: Executor, *, since: datetime, after: str, limit: int) -> list[str]:
    """Users with a session active since `since`, in id order after `after`, at most `limit`."""
    rows = await db.fetch(
        "SELECT DISTINCT user_id FROM sessions"
        " WHERE last_active_at >= $1 AND user_id > $2 ORDER BY user_id LIMIT $3",
        since,
        after,
        limit,
    )
    return [str(r["user_id"]) for r in rows]
