"""Smoke run of the chaos benchmark's two phases against an in-process sim and gateway.

The program itself starts the sim and gateways as processes (`python -m loadtests.bench_chaos`);
here the same phases drive a real gateway on loopback, small enough to finish in seconds, and
the test asserts on what the phases report, never on timings.
"""

from __future__ import annotations

from pathlib import Path

from gateway.server import running_gateway
from gateway.settings import QuotaSettings
from loadtests import bench_chaos
from loadtests.added_ttft import SECRET
from providers.sim import SimKnobs, running_sim
from tests.conftest import make_settings

ROOMY = QuotaSettings(
    turns_per_minute=100_000, tokens_per_day=10**9, concurrent_streams=100, connections=100
)
PRIMARY = "primary:gpt-4o-mini"
BACKUP = "backup:claude-haiku-4-5"


async def test_phases_fail_over_and_see_the_breaker_open(tmp_path: Path) -> None:
    async with running_sim(SimKnobs(ttft_ms=5, tokens_per_s=0, reply_tokens=8)) as sim:
        settings = make_settings(sim.url, tmp_path, jwt_secret=SECRET, quotas=ROOMY)
        async with running_gateway(settings) as gateway:
            steady = await bench_chaos.steady(gateway.url, sim.url, 24, 4, 0.5)
        async with running_gateway(settings) as gateway:
            death = await bench_chaos.death(gateway.url, sim.url, 4, 0.3, 10.0)
        assert sim.knobs.models == {}  # each phase leaves the sim healthy

    assert steady["turns"] == 24
    assert steady["client_failed"] == 0
    assert sum(steady["served_by"].values()) == 24
    assert steady["served_by"].get(BACKUP, 0) == steady["failed_over"] > 0
    assert all(key.startswith(PRIMARY) for key in steady["fallback_codes"])

    assert death["breaker_state_before"] == 0.0
    assert death["time_to_open_ms"] is not None
    assert 0 <= death["time_to_open_lower_bound_ms"] <= death["time_to_open_ms"]
    during = death["turns_in_flight_until_open"]
    assert during["turns"] > 0
    assert during["client_failed"] == 0
    assert during["served_by"].get(BACKUP, 0) > 0


def test_added_ttft_compares_failed_over_turns_with_the_rest() -> None:
    direct = [bench_chaos.Turn(sent=0.0, first=0.1, ok=True, target=PRIMARY) for _ in range(3)]
    skipped = {"target": PRIMARY, "code": "circuit_open", "status": None}
    failed = {"target": PRIMARY, "code": "upstream_unavailable", "status": 503}
    over = [
        bench_chaos.Turn(sent=0.0, first=0.3, ok=True, target=BACKUP, fallbacks=[failed]),
        bench_chaos.Turn(sent=0.0, first=0.15, ok=True, target=BACKUP, fallbacks=[skipped]),
    ]
    groups = bench_chaos.ttft_groups([*direct, *over])
    assert groups["not_failed_over"] == {"n": 3, "p50": 100.0, "p95": 100.0}
    assert groups["failed_over_after_errors"] == {"n": 1, "p50": 300.0, "p95": 300.0}
    assert groups["failed_over_circuit_open_only"]["n"] == 1
    assert groups["added_ms_failed_over_after_errors"] == {"p50": 200.0, "p95": 200.0}
