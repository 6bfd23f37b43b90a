"""A circuit breaker per route target.

    closed --(failure rate over the window, or slow first tokens)--> open
    open --(cooldown passed)--> half_open --(probe succeeds)--> closed
                                          --(probe fails)-----> open
    any --(authentication failed)--> unusable --(auth cooldown passed)--> half_open, one probe
                                                  (an auth failure of that probe: unusable again)

Only transient errors count towards the failure rate. An authentication failure is no passing
fault, but keys get rotated: the long auth cooldown keeps a wrong key from costing every turn a
round trip, and its single probe lets a fixed key back in without a restart.

Every call that `try_acquire` admits must end in exactly one of `record_success`,
`record_failure` or `release`; a slow first token (`record_first_token`) settles the call as a
failure at once, and what follows is then ignored.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from providers.errors import AuthenticationFailed, ProviderError
from providers.resilience.config import BreakerConfig, Clock

__all__ = ["BreakerListener", "BreakerState", "Call", "CircuitBreaker"]

log = logging.getLogger("coach.breaker")

BreakerListener = Callable[[str, str, str], None]
"""Called as `listener(target, old_state, new_state)` on every state change."""


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    UNUSABLE = "unusable"


# States that end, once their cooldown passed, in half_open.
_COOLING = (BreakerState.OPEN, BreakerState.UNUSABLE)


@dataclass(slots=True)
class Call:
    """One admitted call. `generation` ties it to the state it was admitted in."""

    generation: int
    probe: bool
    settled: bool = False


class CircuitBreaker:
    """Tracks one target's health; see the module docstring for the state machine."""

    def __init__(
        self,
        name: str,
        config: BreakerConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        listeners: Iterable[BreakerListener] = (),
    ) -> None:
        self.name = name
        self._config = config or BreakerConfig()
        self._clock = clock
        self._listeners = list(listeners)
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._failures = 0  # how many of `_outcomes` failed (kept, not summed: O(1) per call)
        self._open_until = 0.0  # while open or unusable: when probes may begin
        self._retry_until = 0.0
        self._probes = 0
        self._probe_limit = self._config.half_open_probes

    def add_listener(self, listener: BreakerListener) -> None:
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        """The current state; an open or unusable circuit whose cooldown passed turns half-open
        here (after an auth cooldown with a single probe slot)."""
        state = self._state
        if state in _COOLING and self._clock() >= self._open_until:
            if state is BreakerState.UNUSABLE:
                self._transition(BreakerState.HALF_OPEN, "auth cooldown over", probes=1)
            else:
                self._transition(BreakerState.HALF_OPEN, "cooldown over")
        return self._state

    def retry_after_s(self) -> float | None:
        """Seconds until an open or unusable circuit lets a probe through; None otherwise."""
        if self.state not in _COOLING:
            return None
        return max(self._open_until - self._clock(), 0.0)

    def try_acquire(self) -> Call | None:
        """Admit a call, or None when the circuit is open, unusable or out of probe slots."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Call(self._generation, probe=False)
        if state is BreakerState.HALF_OPEN and self._probes < self._probe_limit:
            self._probes += 1
            return Call(self._generation, probe=True)
        return None

    def record_first_token(self, call: Call, ttft_ms: float) -> None:
        """A slow first token counts as a failure (the call is settled by it)."""
        if ttft_ms > self._config.slow_ttft_ms:
            self._settle(call, failed=True, reason=f"slow first token ({ttft_ms:.0f} ms)")

    def record_success(self, call: Call) -> None:
        self._settle(call, failed=False, reason="probe succeeded")

    def record_failure(self, call: Call, error: ProviderError) -> None:
        """Count a transient error; an authentication failure makes the target unusable (one
        admitted before the state changed is stale and ignored, as other outcomes are)."""
        if isinstance(error, AuthenticationFailed):
            if not call.settled:
                call.settled = True
                self._release_probe(call)
                if call.generation == self._generation:
                    self.mark_unusable(error.code)
            return
        if not error.transient:
            self.release(call)
            return
        if error.retry_after_s:
            self._retry_until = max(self._retry_until, self._clock() + error.retry_after_s)
        self._settle(call, failed=True, reason=error.code)

    def release(self, call: Call) -> None:
        """End a call that says nothing about the target's health (cancelled, bad request)."""
        if not call.settled:
            call.settled = True
            self._release_probe(call)

    def mark_unusable(self, reason: str) -> None:
        """Take the target out for the auth cooldown (unless it is out for it already)."""
        if self._state is not BreakerState.UNUSABLE:
            self._open_until = self._clock() + self._config.auth_cooldown_s
            self._transition(BreakerState.UNUSABLE, reason)

    def reset(self) -> None:
        """Back to closed with no history (after a configuration change)."""
        self._forget_outcomes()
        self._retry_until = 0.0
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED, "reset")

    def _settle(self, call: Call, *, failed: bool, reason: str) -> None:
        if call.settled:
            return
        call.settled = True
        self._release_probe(call)
        if call.generation != self._generation:
            return  # admitted under an earlier state: its outcome is stale
        if self._state is BreakerState.HALF_OPEN:
            if failed:
                self._open(f"probe failed: {reason}")
            else:
                self._transition(BreakerState.CLOSED, reason)
        elif self._state is BreakerState.CLOSED:
            self._count(failed, reason)

    def _count(self, failed: bool, reason: str) -> None:
        now = self._clock()
        outcomes = self._outcomes
        outcomes.append((now, failed))
        self._failures += failed
        horizon = now - self._config.window_s
        while outcomes and outcomes[0][0] <= horizon:
            self._failures -= outcomes.popleft()[1]
        calls, failures = len(outcomes), self._failures
        enough = calls >= self._config.min_calls
        if failed and enough and failures / calls >= self._config.failure_rate:
            self._open(f"failure rate {failures}/{calls}, last: {reason}")

    def _forget_outcomes(self) -> None:
        self._outcomes.clear()
        self._failures = 0

    def _open(self, reason: str) -> None:
        now = self._clock()
        wait = max(self._config.cooldown_s, self._retry_until - now)
        self._open_until = now + min(wait, self._config.max_cooldown_s)
        self._transition(BreakerState.OPEN, reason)

    def _release_probe(self, call: Call) -> None:
        if call.probe and call.generation == self._generation and self._probes > 0:
            self._probes -= 1

    def _transition(self, new: BreakerState, reason: str, *, probes: int | None = None) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probes = 0
        self._probe_limit = self._config.half_open_probes if probes is None else probes
        if new is BreakerState.CLOSED:
            self._forget_outcomes()
        log.info(
            "breaker %s: %s -> %s",
            self.name,
            old.value,
            new.value,
            extra={"target": self.name, "old": old.value, "new": new.value, "reason": reason},
        )
        for listener in list(self._listeners):
            try:
                listener(self.name, old.value, new.value)
            except Exception:  # a broken listener must not break routing
                log.exception("breaker listener failed", extra={"target": self.name})
