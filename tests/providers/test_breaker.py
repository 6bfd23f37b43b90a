"""Circuit breaker transitions, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from providers.errors import (
    AuthenticationFailed,
    BadRequest,
    RateLimited,
    UpstreamUnavailable,
)
from providers.resilience import BreakerConfig, BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CONFIG = BreakerConfig(
    window_s=30,
    min_calls=4,
    failure_rate=0.5,
    slow_ttft_ms=1000,
    cooldown_s=10,
    max_cooldown_s=60,
    half_open_probes=2,
    auth_cooldown_s=120,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[tuple[str, str, str]]) -> CircuitBreaker:
    return CircuitBreaker(
        "p:m", CONFIG, clock=clock, listeners=[lambda *change: changes.append(change)]
    )


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # a call, so mypy does not narrow the property between asserts


def succeed(breaker: CircuitBreaker) -> None:
    call = breaker.try_acquire()
    assert call is not None
    breaker.record_success(call)


def fail(breaker: CircuitBreaker, error: Exception | None = None) -> None:
    call = breaker.try_acquire()
    assert call is not None
    breaker.record_failure(call, error or UpstreamUnavailable("boom", status=500))  # type: ignore[arg-type]


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.min_calls):
        fail(breaker)
    assert state(breaker) is BreakerState.OPEN


def test_opens_on_failure_rate_once_min_calls_reached(breaker: CircuitBreaker) -> None:
    succeed(breaker)
    succeed(breaker)
    fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # 1/3 and below min_calls
    fail(breaker)
    assert state(breaker) is BreakerState.OPEN  # 2/4 = 50 %
    assert breaker.try_acquire() is None


def test_min_calls_guards_against_early_opening(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.min_calls - 1):
        fail(breaker)
    assert state(breaker) is BreakerState.CLOSED


def test_rate_below_threshold_stays_closed(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        succeed(breaker)
    fail(breaker)
    for _ in range(3):
        succeed(breaker)
    fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # 2/8


def test_old_outcomes_leave_the_window(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(CONFIG.window_s + 1)
    fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # only 1 call left in the window


def test_failures_that_left_the_window_no_longer_count(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(CONFIG.window_s + 1)
    for _ in range(CONFIG.min_calls):
        succeed(breaker)
    fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # 1 failure in the window, not 4


def test_slow_first_tokens_count_as_failures(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.min_calls):
        call = breaker.try_acquire()
        assert call is not None
        breaker.record_first_token(call, ttft_ms=CONFIG.slow_ttft_ms + 1)
        breaker.record_success(call)  # settled by the slow token already: ignored
    assert state(breaker) is BreakerState.OPEN


def test_fast_first_tokens_do_not_count(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.min_calls):
        call = breaker.try_acquire()
        assert call is not None
        breaker.record_first_token(call, ttft_ms=CONFIG.slow_ttft_ms - 1)
        breaker.record_success(call)
    assert state(breaker) is BreakerState.CLOSED


def test_cooldown_then_half_open(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    assert breaker.retry_after_s() == pytest.approx(CONFIG.cooldown_s)
    clock.advance(CONFIG.cooldown_s - 0.1)
    assert state(breaker) is BreakerState.OPEN
    clock.advance(0.2)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_retry_after_lengthens_cooldown(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(CONFIG.min_calls):
        fail(breaker, RateLimited("slow down", status=429, retry_after_s=25))
    assert state(breaker) is BreakerState.OPEN
    clock.advance(CONFIG.cooldown_s + 1)
    assert state(breaker) is BreakerState.OPEN
    clock.advance(25 - CONFIG.cooldown_s)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_retry_after_is_capped(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(CONFIG.min_calls):
        fail(breaker, RateLimited("slow down", status=429, retry_after_s=3600))
    assert breaker.retry_after_s() == pytest.approx(CONFIG.max_cooldown_s)
    clock.advance(CONFIG.max_cooldown_s)
    assert state(breaker) is BreakerState.HALF_OPEN


def test_half_open_admits_limited_probes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(CONFIG.cooldown_s)
    probes = [breaker.try_acquire() for _ in range(CONFIG.half_open_probes)]
    assert all(p is not None and p.probe for p in probes)
    assert breaker.try_acquire() is None
    assert probes[0] is not None
    breaker.release(probes[0])  # a cancelled probe frees its slot
    assert breaker.try_acquire() is not None


def test_probe_success_closes(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(CONFIG.cooldown_s)
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_success(probe)
    assert state(breaker) is BreakerState.CLOSED
    fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # history was cleared


def test_probe_failure_reopens(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(CONFIG.cooldown_s)
    probe, other = breaker.try_acquire(), breaker.try_acquire()
    assert probe is not None and other is not None
    breaker.record_failure(probe, UpstreamUnavailable("still down", status=503))
    assert state(breaker) is BreakerState.OPEN
    breaker.record_success(other)  # admitted before the re-open: stale
    assert state(breaker) is BreakerState.OPEN


def test_authentication_failure_takes_the_target_out_for_the_auth_cooldown(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, AuthenticationFailed("bad key", status=401))
    assert state(breaker) is BreakerState.UNUSABLE
    assert breaker.try_acquire() is None
    assert breaker.retry_after_s() == pytest.approx(CONFIG.auth_cooldown_s)
    clock.advance(CONFIG.auth_cooldown_s - 0.1)
    assert state(breaker) is BreakerState.UNUSABLE
    breaker.reset()
    assert state(breaker) is BreakerState.CLOSED


def test_after_the_auth_cooldown_one_probe_and_its_success_closes(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    fail(breaker, AuthenticationFailed("bad key", status=401))
    clock.advance(CONFIG.auth_cooldown_s)
    assert state(breaker) is BreakerState.HALF_OPEN
    probe = breaker.try_acquire()
    assert probe is not None and probe.probe
    assert breaker.try_acquire() is None  # one probe, not `half_open_probes`
    breaker.record_success(probe)  # the key was rotated
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.try_acquire() is not None


def test_an_auth_failure_of_the_probe_takes_the_target_out_again(
    breaker: CircuitBreaker, clock: FakeClock, changes: list[tuple[str, str, str]]
) -> None:
    fail(breaker, AuthenticationFailed("bad key", status=401))
    clock.advance(CONFIG.auth_cooldown_s)
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_failure(probe, AuthenticationFailed("still bad", status=403))
    assert state(breaker) is BreakerState.UNUSABLE
    assert breaker.retry_after_s() == pytest.approx(CONFIG.auth_cooldown_s)
    clock.advance(CONFIG.auth_cooldown_s)
    assert state(breaker) is BreakerState.HALF_OPEN
    assert [new for _, _, new in changes] == ["unusable", "half_open", "unusable", "half_open"]


def test_a_cancelled_auth_probe_frees_its_slot(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, AuthenticationFailed("bad key", status=401))
    clock.advance(CONFIG.auth_cooldown_s)
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.release(probe)
    assert breaker.try_acquire() is not None


def test_a_stale_auth_failure_does_not_take_a_recovered_target_out(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    late = breaker.try_acquire()  # admitted while closed, answered after the recovery
    fail(breaker, AuthenticationFailed("bad key", status=401))
    clock.advance(CONFIG.auth_cooldown_s)
    succeed(breaker)
    assert late is not None
    breaker.record_failure(late, AuthenticationFailed("bad key", status=401))
    assert state(breaker) is BreakerState.CLOSED


def test_non_transient_errors_are_not_counted(breaker: CircuitBreaker) -> None:
    for _ in range(CONFIG.min_calls * 2):
        fail(breaker, BadRequest("bad request", status=400))
    assert state(breaker) is BreakerState.CLOSED
    for _ in range(CONFIG.min_calls - 1):
        fail(breaker)
    assert state(breaker) is BreakerState.CLOSED  # the bad requests were not calls either


def test_listeners_and_log_lines(
    breaker: CircuitBreaker,
    clock: FakeClock,
    changes: list[tuple[str, str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="coach.breaker"):
        trip(breaker)
        clock.advance(CONFIG.cooldown_s)
        probe = breaker.try_acquire()
        assert probe is not None
        breaker.record_success(probe)
    assert changes == [
        ("p:m", "closed", "open"),
        ("p:m", "open", "half_open"),
        ("p:m", "half_open", "closed"),
    ]
    records = [r for r in caplog.records if r.name == "coach.breaker"]
    assert [(r.old, r.new) for r in records] == [  # type: ignore[attr-defined]
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert all(r.target == "p:m" for r in records)  # type: ignore[attr-defined]


def test_broken_listener_does_not_break_the_breaker(breaker: CircuitBreaker) -> None:
    def broken(target: str, old: str, new: str) -> None:
        raise RuntimeError("listener bug")

    breaker.add_listener(broken)
    trip(breaker)
    assert state(breaker) is BreakerState.OPEN
