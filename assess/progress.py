"""Focus progression: an exponential moving average of recent progress scores, and its level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from db.assessments import progress_scores
from db.focuses import active_focuses, list_focuses
from db.pool import Executor

__all__ = ["ALPHA", "WINDOW", "Band", "FocusProgress", "band", "ema", "level", "user_progress"]

ALPHA = 0.3
WINDOW = 20
Band = Literal["novice", "developing", "mastery"]


def ema(scores: Sequence[float], alpha: float = ALPHA) -> float | None:
    """EMA of `scores` (oldest first), seeded with the first; None without scores."""
    if not scores:
        return None
    value = float(scores[0])
    for score in scores[1:]:
        value = alpha * float(score) + (1 - alpha) * value
    return value


def level(value: float) -> int:
    """Level 1-10: the EMA rounded down, so EMA < 4 is 1-3, < 8 is 4-7, else 8-10."""
    return min(10, max(1, math.floor(value + 1e-9)))


def band(lvl: int) -> Band:
    if lvl <= 3:
        return "novice"
    return "developing" if lvl <= 7 else "mastery"


@dataclass(frozen=True, slots=True)
class FocusProgress:
    focus_id: str
    name: str
    active: bool
    samples: int
    ema: float | None
    level: int | None
    band: Band | None

    def to_json(self) -> dict[str, object]:
        return {
            "focus_id": self.focus_id,
            "name": self.name,
            "active": self.active,
            "samples": self.samples,
            "ema": None if self.ema is None else round(self.ema, 3),
            "level": self.level,
            "band": self.band,
        }


async def user_progress(db: Executor, user_id: str) -> list[FocusProgress]:
    """Progress on the user's active focuses and on every focus with scores (active first)."""
    names = {f.id: f.name for f in await list_focuses(db)}
    active = [f.id for f in await active_focuses(db, user_id)]
    scores = await progress_scores(db, user_id, per_focus=WINDOW)
    ordered = active + sorted(f for f in scores if f not in active)
    out: list[FocusProgress] = []
    for focus_id in ordered:
        value = ema(scores.get(focus_id, []))
        lvl = None if value is None else level(value)
        out.append(
            FocusProgress(
                focus_id,
                names.get(focus_id, focus_id),
                focus_id in active,
                len(scores.get(focus_id, [])),
                value,
                lvl,
                None if lvl is None else band(lvl),
            )
        )
    return out
