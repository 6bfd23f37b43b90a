"""Facts about a user's practice, computed from what is stored: what every skill's prompt is
given (and what a fallback is built from), so that no answer rests on the client's word alone.

Days are UTC days. "Recent" is the last `days` days (7 by default) for sessions and minutes and
the last `error_days` (30) for error keys: errors are rarer than turns.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from assess.progress import FocusProgress, user_progress
from db.pool import Executor

__all__ = ["ErrorCount", "Facts", "streak_days", "user_facts"]


@dataclass(frozen=True, slots=True)
class ErrorCount:
    key: str
    count: int


@dataclass(frozen=True, slots=True)
class Facts:
    sessions_7d: int
    minutes_7d: float
    streak_days: int
    top_errors: tuple[ErrorCount, ...]
    focuses: tuple[FocusProgress, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions_7d": self.sessions_7d,
            "minutes_7d": round(self.minutes_7d, 1),
            "streak_days": self.streak_days,
            "top_errors": [{"key": e.key, "count": e.count} for e in self.top_errors],
            "focus_levels": [
                {"focus_id": f.focus_id, "level": f.level, "band": f.band, "samples": f.samples}
                for f in self.focuses
            ],
        }


async def user_facts(
    db: Executor, user_id: str, *, days: int = 7, error_days: int = 30, top: int = 5
) -> Facts:
    """The facts of one user now."""
    sessions, minutes = await _recent_sessions(db, user_id, days)
    return Facts(
        sessions_7d=sessions,
        minutes_7d=minutes,
        streak_days=await _streak(db, user_id),
        top_errors=tuple(await _top_errors(db, user_id, error_days, top)),
        focuses=tuple(await user_progress(db, user_id)),
    )


async def _recent_sessions(db: Executor, user_id: str, days: int) -> tuple[int, float]:
    """Sessions active in the window, and their minutes (first to last activity)."""
    row = await db.fetchrow(
        "SELECT count(*) AS n, coalesce(sum(extract(epoch FROM last_active_at - opened_at)), 0)"
        " AS seconds FROM sessions WHERE user_id = $1"
        " AND last_active_at >= now() - make_interval(days => $2)",
        user_id,
        days,
    )
    assert row is not None  # an aggregate always has a row
    return int(row["n"]), float(row["seconds"]) / 60


async def _streak(db: Executor, user_id: str) -> int:
    rows = await db.fetch(
        "SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date AS day,"
        " (now() AT TIME ZONE 'UTC')::date AS today FROM interactions"
        " WHERE user_id = $1 AND created_at >= now() - interval '400 days' ORDER BY day DESC",
        user_id,
    )
    if not rows:
        return 0
    return streak_days([r["day"] for r in rows], rows[0]["today"])


def streak_days(days: Sequence[date], today: date) -> int:
    """Consecutive days with a turn (`days` newest first, distinct), ending today or yesterday."""
    if not days or days[0] < today - timedelta(days=1):
        return 0
    count = 1
    for newer, older in itertools.pairwise(days):
        if newer - older != timedelta(days=1):
            break
        count += 1
    return count


async def _top_errors(db: Executor, user_id: str, days: int, top: int) -> list[ErrorCount]:
    rows = await db.fetch(
        "SELECT e->>'key' AS key, count(*) AS n FROM assessments a,"
        " jsonb_array_elements(a.errors) e WHERE a.user_id = $1"
        " AND a.created_at >= now() - make_interval(days => $2) AND e ? 'key'"
        " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $3",
        user_id,
        days,
        top,
    )
    return [ErrorCount(r["key"], int(r["n"])) for r in rows]
