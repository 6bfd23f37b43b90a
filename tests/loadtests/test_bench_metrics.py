"""The benchmark's reading of the gateway's garbage-collector pauses from its `/metrics` page."""

from __future__ import annotations

import argparse
import socket

import pytest

from gateway.metrics import LAG_BUCKETS, GatewayMetrics
from loadtests import bench_gc
from loadtests.bench_metrics import OVER_MS, gc_pauses, samples, scrape


def test_pauses_between_two_readings_by_generation_and_length() -> None:
    metrics = GatewayMetrics()
    metrics.gc_pause.labels("0").observe(0.5)  # before the window: not counted
    before = samples(metrics.render().decode())
    for gen, seconds in [("0", 0.002), ("1", 0.007), ("2", 0.03), ("2", 0.2)]:
        metrics.gc_pause.labels(gen).observe(seconds)
    after = samples(metrics.render().decode())

    figures = gc_pauses(before, after, window_s=30.0)

    assert figures["gen0"] == {
        "collections": 1,
        "per_minute": 2.0,
        "total_ms": 2.0,
        "mean_ms": 2.0,
        "over_5ms": 0,
        "over_25ms": 0,
        "over_100ms": 0,
    }
    assert (figures["gen1"]["over_5ms"], figures["gen1"]["over_25ms"]) == (1, 0)
    gen2 = figures["gen2"]
    assert (gen2["collections"], gen2["over_25ms"], gen2["over_100ms"]) == (2, 2, 1)
    assert gen2["mean_ms"] == 115.0
    assert figures["over_5ms_per_minute"] == 6.0  # three in 30 s
    assert figures["stopped_percent"] == round(100 * 0.239 / 30, 2)


def test_a_window_without_collections_reads_as_none_stopped() -> None:
    page = samples(GatewayMetrics().render().decode())
    figures = gc_pauses(page, page, window_s=10.0)
    assert figures["over_5ms_per_minute"] == 0.0
    assert figures["stopped_percent"] == 0.0
    assert all(figures[f"gen{g}"]["mean_ms"] is None for g in "012")


async def test_a_page_that_cannot_be_read_gives_none_not_a_lost_run() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await scrape(f"http://127.0.0.1:{port}/metrics", timeout_s=2.0) is None


def test_the_lengths_counted_are_bounds_of_the_gateways_histogram() -> None:
    # A bound the histogram lacks would read as an empty bucket: every pause "over" it.
    assert {ms / 1000 for ms in OVER_MS} <= set(LAG_BUCKETS)


def test_bench_gc_takes_three_thresholds_and_refuses_others() -> None:
    assert bench_gc._thresholds("700,50,10") == (700, 50, 10)
    for bad in ("700,50", "700,50,10,1"):
        with pytest.raises(argparse.ArgumentTypeError, match="three integers"):
            bench_gc._thresholds(bad)
