"""The benchmark's summary of one client run: what counts as an error."""

from __future__ import annotations

from typing import Any

from loadtests.bench_stats import summarize_run


def _raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "sessions": 10,
        "window_s": 10.0,
        "ttft_ms": [50.0, 51.0],
        "turn_ms": [900.0, 910.0],
        "gateway_added_ms": [],
        "turns_ok": 90,
        "turns_failed": 0,
        "token_events": 3600,
        "errors": {},
        "sessions_open": 10,
        "session_failures": {},
    }
    return {**raw, **overrides}


def test_a_run_where_every_session_opened_and_every_turn_ended_has_no_errors() -> None:
    summary = summarize_run(_raw())
    assert summary["error_rate"] == 0 and summary["sessions_unopened"] == 0


def test_sessions_that_never_opened_count_as_failed_attempts() -> None:
    # 7 opened, 1 was refused, 2 were still waiting to be accepted when the run ended.
    summary = summarize_run(_raw(sessions_open=7, session_failures={"connect:ClientError": 1}))
    assert summary["sessions_unopened"] == 2
    assert summary["error_rate"] == round(3 / (90 + 3), 4)
