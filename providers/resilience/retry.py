"""Jittered exponential backoff between attempts on one target."""

from __future__ import annotations

import random

from providers.resilience.config import RetryConfig

__all__ = ["backoff_delay"]


def backoff_delay(retry: int, config: RetryConfig, rng: random.Random) -> float:
    """Seconds to wait before retry number `retry` (1 for the first retry).

    "Equal jitter": half of the capped exponential delay is fixed and half random, so retries
    from many sessions spread out yet never hammer the upstream back to back.
    """
    ceiling = min(config.max_delay_s, config.base_delay_s * 2.0 ** max(retry - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
