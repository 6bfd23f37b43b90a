"""`budgets`: USD spent per day and route target, for the router's daily budgets."""

from __future__ import annotations

from datetime import date

from db.pool import Pool

__all__ = ["BudgetStore"]


class BudgetStore:
    """Daily spend per target, shared by every process on the database."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def load(self, day: date) -> dict[str, float]:
        """Spend of `day` per target."""
        rows = await self._pool.fetch("SELECT target, usd FROM budgets WHERE day = $1", day)
        return {r["target"]: float(r["usd"]) for r in rows}

    async def add(self, day: date, target: str, usd: float) -> None:
        """Add `usd` to the spend of `target` on `day`."""
        await self._pool.execute(
            "INSERT INTO budgets (day, target, usd) VALUES ($1, $2, $3)"
            " ON CONFLICT (day, target) DO UPDATE SET usd = budgets.usd + EXCLUDED.usd",
            day,
            target,
            usd,
        )
