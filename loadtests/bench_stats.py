"""Percentiles and the per-mode summary of one client run."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FLOORS",
    "PROXIES",
    "added",
    "added_interval",
    "cpu_us_per_event",
    "percentile",
    "proxy_cpu",
    "summarize",
    "summarize_run",
    "unopened",
]

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks; `sorted_values` must be sorted, non-empty."""
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = q * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    weight = rank - low
    return float(sorted_values[low] * (1 - weight) + sorted_values[high] * weight)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, mean, p50, p95, p99 and max, in the values' unit (ms here), rounded to microseconds."""
    if not values:
        return {"n": 0, "mean": None, **dict.fromkeys(QUANTILES), "max": None}
    ordered = sorted(values)
    out: dict[str, float | int | None] = {
        "n": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 3),
    }
    for name, q in QUANTILES.items():
        out[name] = round(percentile(ordered, q), 3)
    out["max"] = round(ordered[-1], 3)
    return out


def added_interval(
    through: Sequence[float],
    direct: Sequence[float],
    *,
    rounds: int = 400,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """Per quantile, a bootstrap interval of `through`'s quantile minus `direct`'s: how far the
    added TTFT of this one run could move on another draw of its turns (not between runs, whose
    spread on a shared machine is wider still). Both samples are resampled with replacement."""
    if not through or not direct:
        return dict.fromkeys(QUANTILES)
    rng = random.Random(seed)
    diffs: dict[str, list[float]] = {name: [] for name in QUANTILES}
    for _ in range(rounds):
        a = sorted(rng.choices(through, k=len(through)))
        b = sorted(rng.choices(direct, k=len(direct)))
        for name, q in QUANTILES.items():
            diffs[name].append(percentile(a, q) - percentile(b, q))
    tail = (1 - confidence) / 2
    out: dict[str, list[float] | None] = {}
    for name, values in diffs.items():
        values.sort()
        out[name] = [round(percentile(values, tail), 3), round(percentile(values, 1 - tail), 3)]
    return out


def unopened(raw: Mapping[str, Any]) -> int:
    """Sessions still not open when the run ended, without having failed: a connect that took
    longer than ramp, warm-up and window together."""
    failed = int(sum(raw.get("session_failures", {}).values()))
    return max(int(raw["sessions"]) - int(raw.get("sessions_open") or 0) - failed, 0)


def _error_rate(raw: Mapping[str, Any]) -> float:
    ok, failed = int(raw["turns_ok"]), int(raw["turns_failed"])
    # Sessions that never opened (refused, or still waiting) count as failed attempts.
    lost = sum(raw.get("session_failures", {}).values()) + unopened(raw)
    turns = ok + failed + lost
    return round((failed + lost) / turns, 4) if turns else 1.0


def summarize_run(raw: Mapping[str, Any]) -> dict[str, Any]:
    """From the client's `result` line to the figures kept in the report (no raw samples)."""
    window = float(raw["window_s"])
    ok = int(raw["turns_ok"])
    probe = raw.get("probe")
    return {
        "sessions": raw["sessions"],
        "window_s": window,
        "ttft_ms": summarize(raw["ttft_ms"]),
        "turn_ms": summarize(raw["turn_ms"]),
        "gateway_reported_added_ms": summarize(raw["gateway_added_ms"]),
        "upstream_ttft_seen_ms": summarize(raw.get("upstream_ttft_ms", [])),
        "turns_ok": ok,
        "turns_failed": int(raw["turns_failed"]),
        "error_rate": _error_rate(raw),
        "errors": raw["errors"],
        "sessions_open": raw.get("sessions_open"),
        "sessions_unopened": unopened(raw),
        "session_failures": raw.get("session_failures", {}),
        "turns_per_s": round(ok / window, 1),
        "token_events_per_s": round(int(raw["token_events"]) / window, 1),
        "in_flight_at_close": raw.get("in_flight_at_close"),
        "in_flight_started_before_window": raw.get("in_flight_started_before_window"),
        "oldest_in_flight_s": raw.get("oldest_in_flight_s"),
        # The upstream called directly by sessions of the same run (see `bench_client`).
        "probe": None
        if not probe
        else {
            "sessions": probe["sessions"],
            "ttft_ms": summarize(probe["ttft_ms"]),
            # The added TTFT's 95% interval within this run (`added_interval`).
            "added_ttft_interval_ms": added_interval(raw["ttft_ms"], probe["ttft_ms"]),
            "turns_ok": int(probe["turns_ok"]),
            "error_rate": _error_rate(probe),
            "errors": probe["errors"],
        },
    }


def added(through: Mapping[str, Any], direct: Mapping[str, Any]) -> dict[str, float | None]:
    """Percentile by percentile: TTFT through a proxy minus TTFT calling the upstream directly."""
    out: dict[str, float | None] = {}
    for name in QUANTILES:
        a, b = through["ttft_ms"].get(name), direct["ttft_ms"].get(name)
        out[name] = None if a is None or b is None else round(a - b, 3)
    return out


# The floor relays that `bench --floor` runs: mode (and process) name -> `floor_relay --client`.
FLOORS = {"floor": "hand", "floor_native": "native"}
# The metered processes a run can go through (see `loadtests.bench._metered`).
PROXIES = ("gateway", "product", "product_before", "peer", *FLOORS)


def proxy_cpu(cpu: Mapping[str, float]) -> float | None:
    """The CPU% of the proxy that a run went through; None for the upstream called directly."""
    return next((cpu[name] for name in PROXIES if name in cpu), None)


def cpu_us_per_turn(run: Mapping[str, Any]) -> float | None:
    """The proxy's CPU per finished turn, in microseconds (all its workers together)."""
    cpu, turns = proxy_cpu(run["cpu_percent"]), float(run.get("turns_per_s") or 0)
    if cpu is None or not turns:
        return None
    return round(cpu / 100 / turns * 1e6, 1)


def cpu_us_per_event(run: Mapping[str, Any]) -> float | None:
    """The proxy's CPU per relayed token event, in microseconds (all its workers together)."""
    cpu, events = proxy_cpu(run["cpu_percent"]), float(run["token_events_per_s"])
    if cpu is None or not events:
        return None
    return round(cpu / 100 / events * 1e6, 1)
