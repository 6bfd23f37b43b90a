"""What the sim has seen: requests by endpoint and how each one ended."""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["OUTCOMES", "SimStats"]

OUTCOMES = ("ok", "failed", "hung", "dropped", "malformed", "invalid_json", "cancelled")


class SimStats:
    """Counters for `GET /_sim/stats`; every request ends in exactly one outcome."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_outcome: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()

    def reset(self) -> None:
        """Zero the counters; requests still in flight stay counted as in flight."""
        self.requests = 0
        self.by_endpoint.clear()
        self.by_outcome.clear()
        self.by_status.clear()

    def started(self, endpoint: str) -> None:
        self.requests += 1
        self.in_flight += 1
        self.by_endpoint[endpoint] += 1

    def ended(self, outcome: str, status: int | None = None) -> None:
        self.in_flight -= 1
        self.by_outcome[outcome] += 1
        if status is not None:
            self.by_status[status] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "by_endpoint": dict(self.by_endpoint),
            "by_outcome": {name: self.by_outcome[name] for name in OUTCOMES},
            "by_status": {str(k): v for k, v in self.by_status.items()},
        }
