"""Daily spend per route target, against budgets per provider or per target."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["BudgetStore", "DailyBudget", "utc_day"]

log = logging.getLogger("coach.budget")

STORE_TIMEOUT_S = 2.0  # a slow store must not hold up the end of a turn


class BudgetStore(Protocol):
    """Persists spend so budgets survive restarts and are shared between processes."""

    async def load(self, day: dt.date) -> dict[str, float]:
        """USD spent on `day` (UTC) per target (`"provider:model"`)."""
        ...

    async def add(self, day: dt.date, target: str, usd: float) -> None:
        """Add `usd` to the spend of `target` on `day`."""
        ...


def utc_day() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class DailyBudget:
    """Spend per target for the current UTC day, and whether a target's budget is spent.

    `limits` keys are a provider name (every target of that provider counts against it) or a
    full `"provider:model"` target. Spend is kept in memory; a `store`, when given, is loaded at
    the start of each day and told about every addition. Store failures are logged, not raised:
    chat keeps working on the in-memory figures.
    """

    def __init__(
        self,
        limits: Mapping[str, float],
        *,
        store: BudgetStore | None = None,
        today: Callable[[], dt.date] = utc_day,
    ) -> None:
        self._limits = dict(limits)
        self._store = store
        self._today = today
        self._day: dt.date | None = None
        self._spent: dict[str, float] = {}

    async def refresh(self) -> None:
        """Start a new day when the date changed (loading the store's figures for it)."""
        day = self._today()
        if day == self._day:
            return
        self._day, self._spent = day, {}
        if self._store is None:
            return
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                loaded = await self._store.load(day)
        except Exception:  # the store is optional persistence, not a dependency of chat
            log.exception("budget store load failed", extra={"day": day})
            return
        for target, usd in loaded.items():
            self._spent[target] = self._spent.get(target, 0.0) + usd

    def spent(self, key: str) -> float:
        """USD spent today by a target, or by every target of a provider."""
        return sum(
            usd
            for target, usd in self._spent.items()
            if target == key or target.startswith(f"{key}:")
        )

    def exhausted(self, target: str) -> str | None:
        """The budget key that `target` has spent, or None while it may still be used."""
        provider = target.partition(":")[0]
        for key in (target, provider):
            limit = self._limits.get(key)
            if limit is not None and self.spent(key) >= limit:
                return key
        return None

    def snapshot(self) -> dict[str, float]:
        return dict(self._spent)

    async def add(self, target: str, usd: float) -> None:
        if usd <= 0:
            return
        self._spent[target] = self._spent.get(target, 0.0) + usd
        if self._store is None:
            return
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await self._store.add(self._day or self._today(), target, usd)
        except Exception:  # see `refresh`
            log.exception("budget store add failed", extra={"target": target})
