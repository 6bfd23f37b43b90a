"""Resilience for upstream calls: circuit breakers, retry backoff, deadlines, prices, budgets.

Plain dataclasses configure everything here, so `providers` never imports the gateway's settings;
`gateway.upstreams` converts settings into these.
"""

from __future__ import annotations

from providers.resilience.breaker import BreakerListener, BreakerState, Call, CircuitBreaker
from providers.resilience.budget import BudgetStore, DailyBudget
from providers.resilience.config import BreakerConfig, Clock, DeadlineConfig, RetryConfig, Sleep
from providers.resilience.prices import DEFAULT_PRICES, Price, PriceTable
from providers.resilience.reach import Reachability
from providers.resilience.retry import backoff_delay

__all__ = [
    "DEFAULT_PRICES",
    "BreakerConfig",
    "BreakerListener",
    "BreakerState",
    "BudgetStore",
    "Call",
    "CircuitBreaker",
    "Clock",
    "DailyBudget",
    "DeadlineConfig",
    "Price",
    "PriceTable",
    "Reachability",
    "RetryConfig",
    "Sleep",
    "backoff_delay",
]
