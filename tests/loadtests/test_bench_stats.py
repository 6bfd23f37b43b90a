"""The benchmark's summary of one client run: what counts as an error, what a proxy's CPU per
event is, how far its added TTFT could move within the run."""

from __future__ import annotations

import random
from typing import Any, cast

import pytest

from loadtests.bench import CpuSplit, Servers, _metered, options, split_cpus
from loadtests.bench_procs import Proc
from loadtests.bench_profile import part_of, summarize_folded
from loadtests.bench_report import evaluate_targets, product_vs_relay
from loadtests.bench_stats import (
    FLOORS,
    PROXIES,
    added_interval,
    cpu_us_per_event,
    summarize_run,
)


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


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        ({"gateway": 90.0, "sim": 40.0, "client": 30.0}, 100.0),  # 0.9 s of CPU / 9,000 events
        ({"floor": 27.0, "sim": 50.0, "client": 30.0}, 30.0),
        ({"floor_native": 45.0, "sim": 50.0, "client": 30.0}, 50.0),
        ({"peer": 45.0, "sim": 10.0, "client": 10.0}, 50.0),
        ({"sim": 40.0, "client": 30.0}, None),  # the upstream called directly: no proxy
    ],
)
def test_cpu_per_event_is_the_proxys_cpu_over_its_events(
    cpu: dict[str, float], expected: float | None
) -> None:
    assert cpu_us_per_event({"cpu_percent": cpu, "token_events_per_s": 9000.0}) == expected


def test_no_events_gives_no_cpu_per_event() -> None:
    assert cpu_us_per_event({"cpu_percent": {"gateway": 5.0}, "token_events_per_s": 0.0}) is None


def test_every_run_through_a_proxy_meters_one_that_cpu_per_event_knows() -> None:
    products = ("product", "product_before")
    procs = {name: cast(Proc, object()) for name in ("gateway", "sim", "peer", *FLOORS, *products)}
    found = Servers(
        "http://sim",
        "http://gateway",
        procs,
        peer_url="http://peer",
        floor_urls={mode: f"http://{mode}" for mode in FLOORS},
        peer_status={"name": "litellm", "ran": True},
        products={name: (f"http://{name}", f"postgresql:///{name}") for name in products},
    )
    seen = set()
    for target in found.targets():
        proxies = [name for name in _metered(found, target) if name != "sim"]
        if target.name == "direct":
            assert proxies == []
        else:
            assert len(proxies) == 1 and proxies[0] in PROXIES, (target.name, proxies)
            seen.add(proxies[0])
    assert seen == set(PROXIES)


def test_the_added_interval_holds_the_shift_and_narrows_with_more_turns() -> None:
    rng = random.Random(7)
    direct = [50 + rng.expovariate(0.5) for _ in range(2000)]
    through = [v + 2.0 for v in direct[::-1]]  # the same turns, each 2 ms later
    wide = added_interval(through[:100], direct[:100], rounds=200)
    narrow = added_interval(through, direct, rounds=200)
    for name in ("p50", "p99"):
        low, high = narrow[name] or [0.0, 0.0]
        assert low <= 2.0 <= high, (name, narrow)
        wide_low, wide_high = wide[name] or [0.0, 0.0]
        assert high - low < wide_high - wide_low, (name, narrow, wide)
    assert added_interval(through, direct, rounds=200) == narrow  # seeded: the same each time
    assert added_interval([], direct) == {"p50": None, "p95": None, "p99": None}


def test_the_ttft_targets_carry_the_runs_interval() -> None:
    interval = {"p50": [0.6, 0.9], "p95": [1.0, 2.0], "p99": [3.0, 7.5]}
    ws = {"error_rate": 0.0, "token_events_per_s": 9000.0, "turns_per_s": 200.0}
    step = {
        "concurrency": 200,
        "added_ttft_ms": {"ws": {"p50": 0.8, "p95": 1.5, "p99": 5.2}},
        "modes": {"ws": {**ws, "probe": {"added_ttft_interval_ms": interval}}},
    }
    targets = evaluate_targets({"steps": [step]})
    assert targets["added_ttft_p50_le_1ms_at_200"] == {
        "value": 0.8,
        "interval_95": [0.6, 0.9],
        "met": True,
    }
    assert targets["added_ttft_p99_le_5ms_at_200"] == {
        "value": 5.2,
        "interval_95": [3.0, 7.5],
        "met": False,
    }


def test_pin_gives_each_worker_a_cpu_and_keeps_one_for_the_load() -> None:
    assert split_cpus({0, 1}, 1) == CpuSplit(load={1}, proxy={0})
    assert split_cpus({0, 1, 2, 3}, 2) == CpuSplit(load={2, 3}, proxy={0, 1})
    assert split_cpus({4, 5}, 3) == CpuSplit(load={5}, proxy={4})  # the load keeps one
    with pytest.raises(SystemExit, match="two CPUs"):
        split_cpus({0}, 1)


def test_http_runs_the_gateways_openai_route_without_a_peer() -> None:
    procs = {name: cast(Proc, object()) for name in ("gateway", "sim")}
    assert options(["--http"]).http and not options([]).http
    for http, names in ((False, ["direct", "ws"]), (True, ["direct", "ws", "gateway_http"])):
        found = Servers("http://sim", "http://gateway", procs, http=http)
        assert [t.name for t in found.targets()] == names


def test_a_profile_is_split_into_the_parts_of_the_product() -> None:
    folded = [
        "main (gateway/cli.py:1);reply (streams/turn.py:2);send_now (gateway/ws_protocol.py:3) 6",
        "main (gateway/cli.py:1);_handle (assess/pipeline.py:4);fetchrow (asyncpg/pool.py:5) 3",
        "main (gateway/cli.py:1);put (gateway/turn_store.py:6);_record (db/interactions.py:7) 1",
        "not a sample line",
    ]
    summary = summarize_folded(folded, top=2)
    assert summary["samples"] == 10
    assert summary["parts_percent"] == {
        "relay and the rest": 60.0,
        "assessment pipeline": 30.0,
        "storage (turn writes)": 10.0,
    }
    assert summary["top_own_percent"] == [
        ["send_now (gateway/ws_protocol.py:3)", 60.0],
        ["fetchrow (asyncpg/pool.py:5)", 30.0],
    ]
    assert part_of(["x (asyncpg/connection.py:1)"]) == "database driver"


def test_the_product_is_compared_with_its_relay_per_token_and_per_turn() -> None:
    def run(proxy: str, cpu: float, turns: float) -> dict[str, Any]:
        events = turns * 40
        return {
            "cpu_percent": {proxy: cpu},
            "token_events_per_s": events,
            "turns_per_s": turns,
            "error_rate": 0.0,
        }

    product = run("product", 60.0, 100.0)
    product["assessment_backlog"] = {"max": 500, "drain_s": 12.0}
    product["profile"] = {
        "parts_percent": {"relay and the rest": 75.0, "assessment pipeline": 25.0}
    }
    step = {
        "concurrency": 100,
        "modes": {"ws": run("gateway", 40.0, 100.0), "ws_product": product},
        "added_ttft_ms": {"ws": {"p50": 1.0, "p99": 4.0}, "ws_product": {"p50": 1.2, "p99": 9.0}},
        "cpu_us_per_event": {"ws": 100.0, "ws_product": 150.0},
    }
    row = product_vs_relay(step)["ws_product"]
    assert (row["p50_over_relay"], row["p99_over_relay"], row["cpu_over_relay"]) == (1.2, 2.25, 1.5)
    assert row["cpu_us_per_turn"] == [6000.0, 4000.0]  # 0.6 s of CPU a second / 100 turns
    assert row["cpu_us_per_turn_by_part"] == {
        "relay and the rest": 4500.0,
        "assessment pipeline": 1500.0,
    }
    target = evaluate_targets({"steps": [step]})["ws_product_100"]
    assert target["met"] is False  # p99 over 2x and CPU over 1.2x
